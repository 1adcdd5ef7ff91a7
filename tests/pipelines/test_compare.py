"""`relsum compare` on a real MLflow sqlite store: runs side by side, CIs, champion, Markdown/HTML + plot."""

from __future__ import annotations

import pytest

from relsum.lifecycle import registry
from relsum.lifecycle.config import PromotionGateConfig, TrackingConfig
from relsum.pipelines.compare import run
from relsum.pipelines.configs import CompareConfig


@pytest.fixture
def store(tmp_path, monkeypatch):
    """Two registered runs with eval metrics; the second passes the gate and is champion."""
    from relsum.lifecycle import tracking as tr

    monkeypatch.setenv("RELSUM_HOME", str(tmp_path))
    tracking = TrackingConfig()
    run_ids = []
    for i, (full, tail) in enumerate([(0.40, 0.30), (0.50, 0.45)]):
        with tr.tracked_run(tracking, f"grpo-{i}",
                            tags={registry.TAG_INTERVAL: f"relsum_retrain/2026-10-{12 + 7 * i}"}) as active:
            metrics = {}
            for subset, value in (("full", full), ("tail", tail)):
                for metric in ("ndcg@5", "r@90p"):
                    metrics |= {f"eval.{subset}.{metric}": value, f"eval.{subset}.{metric}.lo": value - 0.1,
                                f"eval.{subset}.{metric}.hi": value + 0.1}
            tr.log_metrics(metrics)
            tr.log_params({"relsum.algo": "grpo", "relsum.grpo.learning_rate": 1e-5,
                           "relsum.train_data": f"/pairs/{i}.parquet"})
            run_ids.append(active.info.run_id)
        version = tr.register_adapter(tracking, active.info.run_id, tags={"policy_dir": "/p"})
        registry.apply_gate(tracking, version, PromotionGateConfig())
    with tr.tracked_run(tracking, "not-evaluated"):
        pass
    return tracking, run_ids[:2]


def test_compare_lists_runs_with_cis_and_champion(store, tmp_path):
    tracking, (first, second) = store
    result = run(CompareConfig(tracking=tracking, out_dir=str(tmp_path / "cmp")))
    by_id = {r["run_id"]: r for r in result["records"]}
    assert len(result["records"]) == 3  # newest first, including the run without evaluation
    assert by_id[second]["champion"] and not by_id[first]["champion"]
    assert by_id[second]["metrics"]["tail.ndcg@5"] == pytest.approx((0.45, 0.35, 0.55))
    assert by_id[first]["gate"] == "promoted" and by_id[second]["interval"] == "relsum_retrain/2026-10-19"
    assert "0.450 [0.350, 0.550]" in result["table"] and "n/a" in result["table"]
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert by_id[first]["params"]["grpo.learning_rate"] == "1e-05"
    assert by_id[first]["params"]["algo"] == "grpo"
    assert "grpo-1" in md and "![NDCG@5 per run](ndcg.png)" in md and "/pairs/1.parquet" in md
    assert "<table" in (tmp_path / "cmp" / "comparison.html").read_text()
    assert (tmp_path / "cmp" / "ndcg.png").read_bytes()[:4] == b"\x89PNG"


def test_compare_selected_runs_and_errors(store, tmp_path):
    tracking, (first, _) = store
    result = run(CompareConfig(tracking=tracking, runs=[first], format="md", out_dir=str(tmp_path / "one")))
    assert [r["run_id"] for r in result["records"]] == [first]
    assert not (tmp_path / "one" / "comparison.html").exists()
    with pytest.raises(ValueError, match="unknown MLflow run"):
        run(CompareConfig(tracking=tracking, runs=["0" * 32]))
    with pytest.raises(ValueError, match="no MLflow experiment"):
        run(CompareConfig(tracking=tracking, experiment="missing"))


def test_compare_refuses_runs_evaluated_at_different_cutoffs(store):
    """A k = 10 run beside k = 5 runs: one-line InputError naming both cutoffs, never a mixed table."""
    from relsum.core.errors import InputError
    from relsum.lifecycle import tracking as tr

    tracking, (first, second) = store
    with tr.tracked_run(tracking, "grpo-k10") as active:
        tr.log_metrics({f"eval.{s}.{m}{stat}": 0.5 for s in ("full", "tail") for m in ("ndcg@10", "r@90p")
                        for stat in ("", ".lo", ".hi")})
    with pytest.raises(InputError) as info:
        run(CompareConfig(tracking=tracking, runs=[first, active.info.run_id]))
    message = str(info.value)
    assert "\n" not in message and "different cutoffs" in message
    assert "ndcg@10" in message and "ndcg@5" in message
    same = run(CompareConfig(tracking=tracking, runs=[first, second]))  # same cutoffs still compare
    assert [r["run_id"] for r in same["records"]] == [first, second]
    alone = run(CompareConfig(tracking=tracking, runs=[active.info.run_id]))  # one cutoff: its own labels
    assert "full NDCG@10" in alone["table"] and "0.500 [0.500, 0.500]" in alone["table"]
