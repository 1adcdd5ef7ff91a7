"""Hostile input to the score store and the path-auto cache (issue 23, cases 1, 4, 14 and 15).

Pruning may delete only store entries; damaged parts and out-of-range scores are treated as missing
(logged, rescored, dropped by prune); a malformed auto choice is ignored and measured again.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest

from relsum.core.errors import InputError
from relsum.pipelines.configs import PruneConfig, StatsConfig
from relsum.pipelines.scores import format_stats, prune, stats
from relsum.scoring import auto_path
from relsum.scoring.config import ScorerConfig
from relsum.scoring.scorer import Scorer, join_title_text
from relsum.scoring.store import ScoreStore, compact, text_hash, write_part
from relsum.scoring.store_layout import MARKER_NAME

QUERIES = ["usb cable", "laptop", "tv"]
TITLES = ["Belkin USB-C cable 2m", "Dell XPS 13 laptop", "Samsung 55 inch QLED TV"]


def _rows(n, prefix="q"):
    return [f"{prefix}{i}" for i in range(n)], [text_hash(f"doc {i}") for i in range(n)], \
        np.linspace(0.1, 0.9, n).astype(np.float32)


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _fake_home(tmp_path):
    """A RELSUM_HOME: models, a reward model, and a real score store under scores/."""
    home = tmp_path / "home"
    for folder, name in (("models/policy", "model.safetensors"), ("reward_model", "config.json")):
        (home / folder).mkdir(parents=True)
        (home / folder / name).write_text("{}")
    ScoreStore("fp", home / "scores").append(*_rows(3))
    return home


@pytest.mark.parametrize("options", [{"keep": ["nothing"]}, {"older_than_days": 0.0},
                                     {"keep": ["nothing"], "dry_run": True}, {}])
def test_prune_refuses_a_folder_that_is_not_a_store(tmp_path, options):
    home = _fake_home(tmp_path)
    before = _tree(home)
    with pytest.raises(InputError, match="not a score store"):
        prune(PruneConfig(store_dir=str(home), **options))
    with pytest.raises(InputError, match="not a score store"):
        stats(StatsConfig(store_dir=str(home)))
    assert _tree(home) == before  # models/, reward_model/ and scores/ all still there, unchanged
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        prune(PruneConfig(store_dir=str(tmp_path / "file"), older_than_days=0.0))


def _store_with_strangers(root):
    """A store with two entries and folders the store did not write (which must survive any prune)."""
    ScoreStore("a" * 64, root).append(*_rows(3))
    ScoreStore("old", root).append(*_rows(2))
    (root / "notes").mkdir()
    (root / "notes" / "todo.txt").write_text("mine")
    (root / "empty").mkdir()
    mixed = root / "mixed"  # store-like part name, plus a file the store never writes
    ScoreStore("mixed", root).append(*_rows(1))
    (mixed / "README.md").write_text("mine")
    nested = root / "nested"
    ScoreStore("nested", root).append(*_rows(1))
    (nested / "sub").mkdir()
    (root / "link").symlink_to(root / "old", target_is_directory=True)
    return {"notes", "empty", "mixed", "nested", "link"}


@pytest.mark.parametrize("legacy", [False, True])
def test_prune_removes_only_store_entries(tmp_path, legacy, caplog):
    root = tmp_path / "scores"
    strangers = _store_with_strangers(root)
    assert (root / MARKER_NAME).is_file()
    if legacy:  # a store written before the marker existed is recognised by its entries' naming
        (root / MARKER_NAME).unlink()
    for options in ({"keep": ["old"]}, {"older_than_days": 0.0}):
        dry = prune(PruneConfig(store_dir=str(root), dry_run=True, **options))
        assert set(dry["left_alone"]) == strangers and not set(dry["removed"]) & strangers
    with caplog.at_level(logging.WARNING):
        result = prune(PruneConfig(store_dir=str(root), keep=["old"]))
    assert result["removed"] == ["a" * 64] and set(result["left_alone"]) == strangers
    assert "notes is not a score-store entry" in caplog.text
    result = prune(PruneConfig(store_dir=str(root), older_than_days=0.0))
    assert result["removed"] == ["old"]
    assert {p.name for p in root.iterdir() if not p.name.startswith(".")} == strangers
    assert (root / "notes" / "todo.txt").read_text() == "mine" and (root / "mixed" / "README.md").exists()
    assert len(list((root / "nested").glob("part-*.parquet"))) == 1  # not compacted either
    assert [r["fingerprint"] for r in stats(StatsConfig(store_dir=str(root)))] == []


def _damage(store_folder, kind):
    part = sorted(store_folder.glob("part-*.parquet"))[-1]
    data = part.read_bytes()
    if kind == "truncated":
        part.write_bytes(data[: len(data) // 2])
    elif kind == "garbled":
        part.write_bytes(data[:4] + bytes(b ^ 0x5A for b in data[4:-8]) + data[-8:])
    elif kind == "empty":
        part.write_bytes(b"")
    elif kind == "wrong schema":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"query": ["x"], "score": ["high"]}), part)
    return part


@pytest.mark.parametrize("kind", ["truncated", "garbled", "empty", "wrong schema"])
def test_damaged_part_is_missing_rescored_counted_and_pruned(tmp_path, tiny_cross_encoder_dir, kind, caplog):
    config = ScorerConfig(max_length=64, store=True, store_dir=str(tmp_path))
    first = Scorer(tiny_cross_encoder_dir, config)
    expected = first.score(QUERIES, TITLES)
    folder = tmp_path / first.fingerprint
    damaged = _damage(folder, kind)
    again = Scorer(tiny_cross_encoder_dir, config)  # a new process, e.g. `relsum evaluate` rerun
    with caplog.at_level(logging.WARNING):
        np.testing.assert_allclose(again.score(QUERIES, TITLES), expected, atol=1e-6)
    assert again.store.misses == 3 and damaged.name in again.store.damaged
    assert f"damaged part {damaged.name}" in caplog.text and "rescored" in caplog.text
    row = stats(StatsConfig(store_dir=str(tmp_path)))[0]
    assert row["parts"] == 2 and row["damaged"] == 1 and row["rows"] == 3
    assert "damaged" in format_stats([row])
    result = prune(PruneConfig(store_dir=str(tmp_path)))
    assert result["compacted"][first.fingerprint]["damaged_parts"] == [damaged.name]
    assert not damaged.exists() and len(list(folder.glob("part-*.parquet"))) == 1
    third = Scorer(tiny_cross_encoder_dir, config)
    np.testing.assert_allclose(third.score(QUERIES, TITLES), expected, atol=1e-6)
    assert third.store.hits == 3 and not third.store.damaged


@pytest.mark.parametrize("bad", [7.0, -0.5, float("nan"), float("inf")])
def test_out_of_range_stored_score_is_rescored_not_served(tmp_path, tiny_cross_encoder_dir, bad, caplog):
    config = ScorerConfig(max_length=64, store=True, store_dir=str(tmp_path))
    scorer = Scorer(tiny_cross_encoder_dir, config)
    expected = Scorer(tiny_cross_encoder_dir, ScorerConfig(max_length=64)).score(QUERIES, TITLES)
    docs = [join_title_text(t, None) for t in TITLES]
    folder = tmp_path / scorer.fingerprint
    folder.mkdir(parents=True)
    planted = np.array([bad, 0.25, 0.75], np.float32)  # a foreign or damaged writer; only row 0 is bad
    write_part(folder, QUERIES, [text_hash(d) for d in docs], planted)
    with caplog.at_level(logging.WARNING):
        got = scorer.score(QUERIES, TITLES)
    assert got[0] == pytest.approx(expected[0], abs=1e-6) and 0.0 <= got[0] <= 1.0
    np.testing.assert_array_equal(got[1:], planted[1:])  # the valid rows are still served
    assert "1 bad row(s)" in caplog.text and scorer.store.misses == 1
    out = compact(folder)
    assert out["damaged_rows"] == 1 and out["rows"] == 3
    fresh = ScoreStore(scorer.fingerprint, tmp_path)
    assert fresh.lookup(QUERIES[:1], [text_hash(docs[0])])[0][0] == pytest.approx(expected[0], abs=1e-6)
    assert not fresh.damaged


def test_append_does_not_store_invalid_scores(tmp_path, caplog):
    store = ScoreStore("fp", tmp_path)
    q, h, _ = _rows(3)
    with caplog.at_level(logging.WARNING):
        store.append(q, h, np.array([0.5, 1.5, np.nan], np.float32))
    assert "not storing 2 score(s)" in caplog.text
    assert ScoreStore("fp", tmp_path).lookup(q, h)[1].tolist() == [True, False, False]
    assert store.append(q[1:], h[1:], np.array([np.nan, -1.0])) is None


@pytest.fixture(scope="module")
def auto_model_dir(tmp_path_factory):
    from relsum.scoring.tiny import build_tiny_cross_encoder

    return build_tiny_cross_encoder(tmp_path_factory.mktemp("hostile_auto"), seed=1, initializer_range=0.5)


@pytest.mark.parametrize("content, why", [
    ([], "not a JSON object but list"),
    ({"version": 1, "chosen": "turbo-int2", "reason": "x", "figures": {}}, "unknown path 'turbo-int2'"),
    ({"version": 1, "reason": "x", "figures": {}}, "'chosen' missing"),
    ({"version": 1, "chosen": "onnx-int8", "reason": "x", "figures": {}}, "not one of the candidates"),
    ({"version": 1, "chosen": "fp16-cuda", "reason": "x", "figures": {"fp16-cuda": {
        "status": "unavailable", "detail": "no CUDA"}}}, "did not pass its gate"),
    ("not json {", "unreadable"),
])
def test_malformed_auto_choice_is_ignored_and_measured_again(tmp_path, auto_model_dir, monkeypatch, caplog,
                                                             content, why):
    from relsum.scoring.factory import make_scorer

    monkeypatch.setattr(auto_path, "TIMING_PAIRS", 16)
    monkeypatch.setattr(auto_path, "ROUNDS", 1)
    config = ScorerConfig(max_length=128, path="auto", auto_paths=["fp16-cuda"], store_dir=str(tmp_path),
                          gate_max_pairs=100)
    file = auto_path.choice_file(Scorer(auto_model_dir, config))
    file.parent.mkdir(parents=True)
    file.write_text(content if isinstance(content, str) else json.dumps(content))
    os.utime(file, ns=(1, 1))
    assert auto_path.list_choices(tmp_path) == []  # stats leaves it out instead of failing
    with caplog.at_level(logging.WARNING):
        scorer = make_scorer(auto_model_dir, config)
    assert why in caplog.text and "measuring again" in caplog.text
    choice = json.loads(file.read_text())
    assert file.stat().st_mtime_ns != 1 and auto_path.choice_problem(choice) is None
    assert scorer.path == choice["chosen"] and scorer.auto_choice["key"] == file.stem
    assert [c["key"] for c in auto_path.list_choices(tmp_path)] == [file.stem]


def test_entry_emptied_by_compaction_stays_an_entry_and_can_be_pruned(tmp_path):
    ScoreStore("fp", tmp_path).append(*_rows(2))
    part = _damage(tmp_path / "fp", "truncated")
    assert stats(StatsConfig(store_dir=str(tmp_path)))[0]["damaged"] == 1
    assert prune(PruneConfig(store_dir=str(tmp_path), dry_run=True))["damaged_parts"] == {"fp": 1}
    assert part.exists()
    out = prune(PruneConfig(store_dir=str(tmp_path)))["compacted"]["fp"]
    assert out["damaged_parts"] == [part.name] and out["parts_after"] == 0 and not part.exists()
    assert [(r["fingerprint"], r["rows"]) for r in stats(StatsConfig(store_dir=str(tmp_path)))] == [("fp", 0)]
    assert prune(PruneConfig(store_dir=str(tmp_path), older_than_days=0.0))["removed"] == ["fp"]
    assert not (tmp_path / "fp").exists()
