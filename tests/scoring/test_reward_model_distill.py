"""Reward-model distillation, cross-validation, the fingerprint cache, held-out isolation and quiet loading,
all on tiny local models and tiny golden-layout folders."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from relsum.core.errors import InputError
from relsum.scoring.config import RewardModelConfig
from relsum.scoring.distill import check_disjoint, fit_target_map
from relsum.scoring.documents import lead_doc
from relsum.scoring.reward_model import train_reward_model

WORDS = ["cable", "laptop", "monitor", "headphones", "printer", "camera", "router", "keyboard"]


def _catalog() -> pd.DataFrame:
    rows = [{"product_id": f"p{i}", "title": f"Acme {w} {i}",
             "text": f"A {w} for the office | colour: black | weight: {i} kg"}
            for i, w in enumerate(WORDS * 3)]
    return pd.DataFrame(rows)


def _judged(catalog: pd.DataFrame, queries: list[int]) -> pd.DataFrame:
    """Per query word: its products graded 1, two others 0 (with product ids, as the stage passes them)."""
    rows = []
    for q in queries:
        word = WORDS[q % len(WORDS)]
        for _, p in catalog.iterrows():
            relevant = word in p["title"]
            if relevant or int(p["product_id"][1:]) % 11 == q % 11:
                rows.append({"query_id": f"q{q}", "query": f"{word} {q}", "product_id": p["product_id"],
                             "title": p["title"], "text": p["text"], "label": 1.0 if relevant else 0.0})
    return pd.DataFrame(rows)


def _config(tiny: Path, out: Path, **kw) -> RewardModelConfig:
    base = dict(base_model=str(tiny), teacher_model=str(tiny), out_dir=str(out), max_length=32,
                eval_max_length=48, batch_size=8, learning_rate=1e-3, epochs=1, hard_negatives=3,
                random_negatives=2, bf16="off")
    return RewardModelConfig(**{**base, **kw})


def test_lead_doc_and_target_map():
    assert lead_doc("Cable", "one two three four", 2) == "Cable | one two"
    assert lead_doc("Cable", None, 2) == "Cable"
    cos = np.linspace(0, 1, 40)
    a, b = fit_target_map(cos, (cos > 0.5).astype(float))
    assert a > 0 and 1 / (1 + np.exp(-(a * 0.9 + b))) > 0.8 > 0.2 > 1 / (1 + np.exp(-(a * 0.1 + b)))


@pytest.mark.slow
def test_distillation_adds_teacher_pairs_and_calibrates(tmp_path, tiny_cross_encoder_dir):
    catalog = _catalog()
    train, eval_ = _judged(catalog, [0, 1, 2, 3]), _judged(catalog, [4, 5])
    logged = train[["query_id", "query", "product_id"]].head(6)
    metrics = train_reward_model(train, eval_, _config(tiny_cross_encoder_dir, tmp_path / "rm"),
                                 catalog=catalog, logged=logged)
    assert metrics["n_judged_pairs"] == len(train) and metrics["n_pseudo_pairs"] > 0
    assert metrics["n_examples"] > 2 * len(train)  # title-only and title+text copies of both kinds
    assert len(metrics["calibration"]) == 2 and metrics["n_eval_queries"] == 2
    for key in ("ndcg5_title", "ndcg5_full", "ndcg5_lead"):
        assert 0 <= metrics[key] <= 1
    assert -1 <= metrics["reward"] <= 0
    assert (tmp_path / "rm" / "model.safetensors").is_file()


def test_training_with_an_eval_query_is_refused(tmp_path, tiny_cross_encoder_dir):
    catalog = _catalog()
    train, eval_ = _judged(catalog, [0, 1]), _judged(catalog, [1, 2])
    with pytest.raises(InputError, match="eval query"):
        train_reward_model(train, eval_, _config(tiny_cross_encoder_dir, tmp_path / "rm"), catalog=catalog)
    log = eval_[["query_id", "query", "product_id"]].assign(query_id="other")  # same text, other id
    with pytest.raises(InputError, match="never reach training"):
        check_disjoint(log, eval_, "log")


@pytest.mark.slow
def test_cross_validation_folds_are_whole_train_queries(tmp_path, tiny_cross_encoder_dir):
    from relsum.scoring.reward_cv import choose_config, query_folds

    folds = query_folds([f"q{i}" for i in range(7)], 3, seed=0)
    assert set().union(*folds) == {f"q{i}" for i in range(7)} and sum(map(len, folds)) == 7
    catalog = _catalog()
    train = _judged(catalog, [0, 1, 2, 3])
    candidates = {"lr_small": _config(tiny_cross_encoder_dir, tmp_path, learning_rate=1e-5),
                  "lr_big": _config(tiny_cross_encoder_dir, tmp_path, learning_rate=1e-3)}
    best, results = choose_config(train, candidates, catalog=catalog, n_folds=2)
    assert best in candidates
    for result in results.values():
        assert len(result["folds"]) == 2
        for fold in result["folds"]:
            # what trained and what was scored never share a query
            assert fold["train_queries"] and not set(fold["train_queries"]) & set(fold["heldout_queries"])
        assert all(0 <= result["mean"][k] <= 1 for k in ("ndcg5_title", "ndcg5_full", "ndcg5_lead"))


def test_bundled_golden_queries_never_reach_training(sample_dir):
    from relsum.pipelines.reward_model import judged_pairs, train_log_pairs

    _, train = judged_pairs(str(sample_dir / "train"))
    golden, eval_ = judged_pairs(str(sample_dir / "golden"))
    log = train_log_pairs(str(sample_dir / "search_log.csv"), golden.queries)
    check_disjoint(train, golden.queries, "train judgments")
    check_disjoint(log, golden.queries, "search log")
    assert len(log) == len(pd.read_csv(sample_dir / "search_log.csv"))  # nothing of the log was golden


def test_search_log_rows_of_eval_queries_are_left_out(tmp_path, sample_dir, caplog):
    from relsum.pipelines.reward_model import train_log_pairs

    golden = pd.read_csv(sample_dir / "golden" / "queries.csv", dtype=str)
    log = pd.read_csv(sample_dir / "search_log.csv", dtype=str)
    leaked = pd.concat([log, pd.DataFrame({"query_id": ["x1", golden.query_id[1]],
                                           "query": [golden["query"][0].upper(), "anything"],
                                           "product_id": ["p1", "p2"]})])
    path = tmp_path / "log.csv"
    leaked.to_csv(path, index=False)
    with caplog.at_level(logging.WARNING):
        kept = train_log_pairs(str(path), golden)
    assert len(kept) == len(log) and "2 rows of 2 eval queries left out" in caplog.text


def _golden_folder(root: Path, catalog: pd.DataFrame, judged: pd.DataFrame) -> Path:
    root.mkdir(parents=True)
    queries = judged[["query_id", "query"]].drop_duplicates().assign(traffic=10)
    queries.to_csv(root / "queries.csv", index=False)
    grades = judged.assign(grade=judged["label"].map({1.0: "3", 0.0: "0"}))
    grades[["query_id", "product_id", "grade"]].to_csv(root / "judgments.csv", index=False)
    (root / "relsum.yaml").write_text('grade_map: {"3": 1.0, "2": 0.5, "1": 0.0, "0": 0.0}\n')
    catalog.rename(columns={"text": "description"}).to_json(root / "products.jsonl", orient="records",
                                                            lines=True)
    return root


@pytest.mark.slow
def test_cache_key_reuses_and_retrains(tmp_path, tiny_cross_encoder_dir, caplog):
    from relsum.pipelines.configs import RewardModelStageConfig
    from relsum.pipelines.reward_model import KEY_FILE, ensure_reward_model

    catalog = _catalog()
    train_dir = _golden_folder(tmp_path / "train", catalog, _judged(catalog, [0, 1, 2]))
    eval_dir = _golden_folder(tmp_path / "eval", catalog, _judged(catalog, [4, 5]))
    config = RewardModelStageConfig(
        train_dir=str(train_dir), eval_dir=str(eval_dir), search_log="", out_dir=str(tmp_path / "rm"),
        base_model=str(tiny_cross_encoder_dir), teacher_model=str(tiny_cross_encoder_dir), max_length=32,
        batch_size=8, epochs=1, hard_negatives=2, random_negatives=1, bf16="off")
    weights = tmp_path / "rm" / "model.safetensors"

    assert ensure_reward_model("", config) == str(tmp_path / "rm")
    first_key = json.loads((tmp_path / "rm" / KEY_FILE).read_text())["key"]
    first_mtime = weights.stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        ensure_reward_model("", config)  # unchanged config and data: reused, not retrained
    assert weights.stat().st_mtime_ns == first_mtime and "reusing" in caplog.text

    config.epochs = 2  # a changed config retrains
    ensure_reward_model("", config)
    second_key = json.loads((tmp_path / "rm" / KEY_FILE).read_text())["key"]
    assert second_key != first_key and weights.stat().st_mtime_ns != first_mtime

    second_mtime = weights.stat().st_mtime_ns
    judgments = train_dir / "judgments.csv"  # changed data retrains
    judgments.write_text(judgments.read_text().replace(",3\n", ",0\n", 1))
    ensure_reward_model("", config)
    assert weights.stat().st_mtime_ns != second_mtime
    assert json.loads((tmp_path / "rm" / KEY_FILE).read_text())["key"] not in (first_key, second_key)
    assert ensure_reward_model("/given/model", config) == "/given/model"


def test_loader_report_stays_off_the_console(tmp_path, capfd, caplog):
    """A head-less encoder gets a new head: relsum says so in one line; the loader's MISSING table only
    reaches the debug log."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from relsum.core.paths import minilm_dir
    from relsum.scoring.reward_train import load_student

    encoder = tmp_path / "encoder"
    BertModel(BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(str(encoder), safe_serialization=True)
    AutoTokenizer.from_pretrained(str(minilm_dir())).save_pretrained(str(encoder))
    capfd.readouterr()
    with caplog.at_level(logging.DEBUG):
        model = load_student(encoder, seed=0)
    printed = capfd.readouterr()
    assert model.config.num_labels == 1
    for stream in (printed.out, printed.err):
        assert "MISSING" not in stream and "newly initialized" not in stream
        assert "Loading weights" not in stream
    assert "training a new relevance head" in caplog.text
    assert any(r.levelno == logging.DEBUG and "MISSING" in r.getMessage() for r in caplog.records)
