"""Reward-model bootstrap on the tiny model: trains, saves a loadable safetensors model, writes metrics."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from relsum.data.atomic_dir import swap_in_folder
from relsum.scoring.config import RewardModelConfig, ScorerConfig
from relsum.scoring.reward_model import METRICS_FILE, train_reward_model
from relsum.scoring.scorer import Scorer


def _pairs(n_queries: int, offset: int = 0) -> pd.DataFrame:
    """Synthetic judged pairs: the relevant product shares the query word, the others do not."""
    words = ["cable", "laptop", "monitor", "headphones", "printer", "camera", "router", "keyboard"]
    rows = []
    for i in range(n_queries):
        word = words[(i + offset) % len(words)]
        for j, other in enumerate(words[:4]):
            relevant = j == 0
            title = (f"Acme {word} model {i}" if relevant
                     else f"Zeta {other if other != word else 'mouse'} {j}")
            rows.append({"query_id": f"q{i + offset}", "query": f"{word} {i + offset}", "title": title,
                         "text": "" if j == 1 else f"colour: black | weight: {j} kg",
                         "label": 1.0 if relevant else (0.5 if j == 3 else 0.0)})
    return pd.DataFrame(rows)


def test_config_checks():
    with pytest.raises(ValueError, match="warmup_ratio"):
        RewardModelConfig(warmup_ratio=1.0)
    with pytest.raises(ValueError, match="max_train_pairs"):
        RewardModelConfig(max_train_pairs=0)
    with pytest.raises(ValueError, match="bf16"):
        RewardModelConfig(bf16="maybe")


def test_bad_labels_are_refused(tmp_path, tiny_cross_encoder_dir):
    bad = _pairs(2).assign(label=2.0)
    cfg = RewardModelConfig(base_model=str(tiny_cross_encoder_dir), out_dir=str(tmp_path / "rm"))
    with pytest.raises(ValueError, match="labels"):
        train_reward_model(bad, _pairs(2), cfg)
    with pytest.raises(ValueError, match="missing columns"):
        train_reward_model(_pairs(2).drop(columns="text"), _pairs(2), cfg)


def test_tiny_training_saves_loadable_model_with_metrics(tmp_path, tiny_cross_encoder_dir):
    out = tmp_path / "rm"
    cfg = RewardModelConfig(base_model=str(tiny_cross_encoder_dir), out_dir=str(out), max_length=32,
                            eval_max_length=32, batch_size=8, learning_rate=1e-3, epochs=1,
                            max_train_pairs=None, bf16="off")
    train, eval_ = _pairs(8), _pairs(4, offset=8)
    metrics = train_reward_model(train, eval_, cfg)

    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    saved = json.loads((out / METRICS_FILE).read_text())
    assert saved["n_judged_pairs"] == len(train) == metrics["n_judged_pairs"]
    assert metrics["n_pseudo_pairs"] == 0
    # every pair as title+text and as title-only, except rows with empty text (same doc twice)
    assert metrics["n_examples"] == 2 * len(train) - (train["text"] == "").sum()
    assert metrics["n_eval_queries"] == 4
    assert all(0 <= saved[f"ndcg5_{view}"] <= 1 for view in ("title", "full", "lead"))
    assert -1 <= saved["reward"] <= 0 and saved["recipe"] == metrics["recipe"]
    before = Scorer(tiny_cross_encoder_dir, ScorerConfig(max_length=32))
    after = Scorer(out, ScorerConfig(max_length=32))
    assert after.has_trained_head and after.fingerprint != before.fingerprint
    q, t, x = eval_["query"].tolist(), eval_["title"].tolist(), eval_["text"].tolist()
    assert np.abs(after.score(q, t, x) - before.score(q, t, x)).max() > 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rm"]  # no scratch left next to it


def test_swap_in_replaces_existing_folder(tmp_path):
    out, staged = tmp_path / "model", tmp_path / "staged"
    out.mkdir()
    (out / "old.txt").write_text("old")
    staged.mkdir()
    (staged / "new.txt").write_text("new")
    swap_in_folder(staged, out)
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
