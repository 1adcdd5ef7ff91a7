"""Champion/challenger gate on a real MLflow sqlite store with real registered versions and logged metrics."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from relsum.lifecycle import registry
from relsum.lifecycle.config import PromotionGateConfig, TrackingConfig
from relsum.lifecycle.registry import decide


def _scores(full_ndcg, tail_ndcg, full_r=0.5, tail_r=0.5):
    return {"full": {"ndcg@5": full_ndcg, "r@90p": full_r},
            "tail": {"ndcg@5": tail_ndcg, "r@90p": tail_r}}


def test_decide_rules():
    gate = PromotionGateConfig(r_at_p_tolerance=0.02)
    champ = _scores(0.50, 0.40)
    assert decide(_scores(0.51, 0.41), None, gate)[0]
    assert decide(_scores(0.51, 0.41), champ, gate)[0]
    assert not decide(_scores(0.51, 0.40), champ, gate)[0]  # tail not better
    assert not decide(_scores(0.49, 0.45), champ, gate)[0]  # full worse
    assert decide(_scores(0.51, 0.41, full_r=0.485), champ, gate)[0]  # loses 0.015 <= 0.02
    ok, reasons = decide(_scores(0.51, 0.41, tail_r=0.47), champ, gate)  # loses 0.03 > 0.02
    assert not ok and any("tail R@90P" in r and "loses too much" in r for r in reasons)
    assert not decide(_scores(0.51, math.nan), champ, gate)[0]  # undefined never passes
    assert not decide(_scores(0.51, 0.41), champ, PromotionGateConfig(min_ndcg_gain=0.05))[0]
    with pytest.raises(ValueError):
        PromotionGateConfig(r_at_p_tolerance=-1)


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    monkeypatch.setenv("RELSUM_HOME", str(tmp_path))
    return TrackingConfig()


def make_version(tracking, scores, extra=None, tags=None, adapter_dir=None):
    """A finished training run with eval.* metrics (and CIs) and one registered version of it."""
    from relsum.lifecycle import tracking as tr

    metrics = {}
    for subset, values in scores.items():
        for metric, value in values.items():
            metrics.update({f"eval.{subset}.{metric}": value, f"eval.{subset}.{metric}.lo": value - 0.05,
                            f"eval.{subset}.{metric}.hi": value + 0.05})
    with tr.tracked_run(tracking, "run") as active:
        tr.log_metrics(metrics | (extra or {}))
        tr.log_params({"algo": "grpo", "train_data": "/data/pairs.parquet"})
        if adapter_dir is not None:
            tr.log_artifacts(adapter_dir, "adapter")
        run_id = active.info.run_id
        for key, value in (tags or {}).items():
            import mlflow

            mlflow.set_tag(key, value)
    return tr.register_adapter(tracking, run_id, tags={"policy_dir": "/models/policy"})


def test_better_version_becomes_champion_worse_does_not(tracking):
    from mlflow import MlflowClient

    gate = PromotionGateConfig(r_at_p_tolerance=0.01)
    client = MlflowClient(tracking.resolved_uri())
    v1 = make_version(tracking, _scores(0.50, 0.40))
    assert registry.apply_gate(tracking, v1, gate)["promoted"]  # the first version ever
    v2 = make_version(tracking, _scores(0.55, 0.45))
    assert registry.apply_gate(tracking, v2, gate) | {"reasons": None} == {
        "version": v2, "promoted": True, "reasons": None, "champion": v2}
    v3 = make_version(tracking, _scores(0.60, 0.44))  # better on full, worse on tail
    decision = registry.apply_gate(tracking, v3, gate)
    assert not decision["promoted"] and decision["champion"] == v2
    v4 = make_version(tracking, _scores(0.60, 0.50, full_r=0.45))  # better NDCG, loses 0.05 R@90P
    assert not registry.apply_gate(tracking, v4, gate)["promoted"]
    assert str(client.get_model_version_by_alias(tracking.registered_model, "champion").version) == v2
    assert client.get_model_version(tracking.registered_model, v3).tags[registry.TAG_GATE] == "rejected"
    # A rerun of the gate returns the stored decision and moves nothing.
    assert registry.apply_gate(tracking, v3, gate) == decision
    assert str(registry.champion_version(tracking).version) == v2


def test_gate_prefers_paired_champion_figures(tracking):
    """When the challenger was evaluated against the current champion, those paired figures decide."""
    gate = PromotionGateConfig()
    v1 = make_version(tracking, _scores(0.30, 0.30))  # champion's own (older, easier) evaluation
    registry.apply_gate(tracking, v1, gate)
    paired = {f"baseline.champion.{s}.{m}": 0.70 for s in ("full", "tail")
              for m in ("ndcg@5", "r@90p")}
    v2 = make_version(tracking, _scores(0.60, 0.60), extra=paired, tags={registry.TAG_CHAMPION_EVAL: v1})
    decision = registry.apply_gate(tracking, v2, gate)
    assert not decision["promoted"] and "0.7000" in decision["reasons"][0]
    v3 = make_version(tracking, _scores(0.60, 0.60), extra=paired, tags={registry.TAG_CHAMPION_EVAL: "99"})
    # stale pairing: the champion run's 0.30 decides
    assert registry.apply_gate(tracking, v3, gate)["promoted"]


def test_resolve_and_log_evaluation_are_idempotent(tracking, tmp_path):
    from mlflow import MlflowClient

    adapter = tmp_path / "adapter_src"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    v1 = make_version(tracking, _scores(0.5, 0.4), adapter_dir=adapter)
    mv = MlflowClient(tracking.resolved_uri()).get_model_version(tracking.registered_model, v1)
    resolved = registry.resolve(tracking, mv, tmp_path / "dl")
    assert resolved["policy_dir"] == "/models/policy" and resolved["version"] == v1
    assert (Path(resolved["adapter_dir"]) / "adapter_config.json").read_text() == "{}"
    iv = {"value": 0.6, "lo": 0.5, "hi": 0.7}
    block = {"ndcg@5": iv, "r@90p": iv,
             "gain_pct": {"ndcg@5": iv, "r@90p": iv}}
    metrics = {"config": {"candidates": ["none", "challenger"]},
               "subsets": {s: {"n_queries": 4, "candidates": {"none": block, "challenger": block}}
                           for s in ("full", "tail")}}
    for _ in range(2):
        flat = registry.log_evaluation(tracking, mv.run_id, metrics, None, [])
    client = MlflowClient(tracking.resolved_uri())
    assert flat["eval.full.ndcg@5.lo"] == 0.5 and flat["baseline.none.tail.ndcg@5.hi"] == 0.7
    assert len(client.get_metric_history(mv.run_id, "eval.tail.ndcg_at_5.gain_pct")) == 1
    assert client.get_run(mv.run_id).data.metrics["eval.full.ndcg_at_5"] == 0.6


def test_gate_refuses_a_champion_evaluated_at_another_cutoff(tracking):
    """A k = 10 challenger against a k = 5 champion: an InputError, and the alias stays where it was."""
    from mlflow import MlflowClient

    from relsum.core.errors import InputError

    gate = PromotionGateConfig()
    v1 = make_version(tracking, _scores(0.30, 0.30))
    assert registry.apply_gate(tracking, v1, gate)["promoted"]
    k10 = {s: {"ndcg@10": 0.9, "r@90p": 0.9} for s in ("full", "tail")}
    v2 = make_version(tracking, k10)
    with pytest.raises(InputError, match="challenger: ndcg@10, r@90p; champion: ndcg@5, r@90p"):
        registry.apply_gate(tracking, v2, gate)
    client = MlflowClient(tracking.resolved_uri())
    assert str(client.get_model_version_by_alias(tracking.registered_model, "champion").version) == v1
    assert registry.TAG_GATE not in client.get_model_version(tracking.registered_model, v2).tags
    with pytest.raises(InputError, match="cannot gate"):
        decide(k10, _scores(0.5, 0.5), gate)
    ok, reasons = decide(k10, k10, gate)  # the same cutoffs compare, labelled with them
    assert not ok and reasons[0] == "full NDCG@10 0.9000 vs 0.9000: not better"


def test_an_evaluation_without_cutoff_names_is_refused_not_logged_empty():
    from relsum.core.errors import InputError

    iv = {"value": 0.6, "lo": 0.5, "hi": 0.7}
    old = {"ndcg_at_k": iv, "recall_at_precision": iv, "gain_pct": {"ndcg_at_k": iv}}
    metrics = {"config": {"candidates": ["challenger"]},
               "subsets": {s: {"n_queries": 4, "candidates": {"challenger": old}} for s in ("full", "tail")}}
    with pytest.raises(InputError, match="predates"):
        registry.eval_metric_dict(metrics, "challenger")
