"""`relsum demo` end to end at tiny size: every stage runs for real and MLflow can be read back."""

import json

import mlflow
import pandas as pd
import pytest

from relsum.config import load_config


def _small_sample(tmp_path, sample_dir, n_golden=5, n_train=4):
    """A golden folder and a search log in the bundled layout, cut to a few queries."""
    golden = tmp_path / "golden"
    golden.mkdir()
    queries = pd.read_csv(sample_dir / "golden" / "queries.csv", dtype=str).head(n_golden)
    judgments = pd.read_csv(sample_dir / "golden" / "judgments.csv", dtype=str)
    queries.to_csv(golden / "queries.csv", index=False)
    judgments[judgments.query_id.isin(queries.query_id)].to_csv(golden / "judgments.csv", index=False)
    (golden / "relsum.yaml").write_text((sample_dir / "golden" / "relsum.yaml").read_text())
    (golden / "products.jsonl").write_text((sample_dir / "products.jsonl").read_text())
    log = pd.read_csv(sample_dir / "search_log.csv", dtype=str)
    log = log[log.query_id.isin(log.query_id.drop_duplicates().head(n_train))]
    log.to_csv(tmp_path / "search_log.csv", index=False)
    return golden, tmp_path / "search_log.csv"


@pytest.mark.slow
def test_demo_runs_every_stage_and_tracks_in_mlflow(tmp_path, sample_dir, tiny_cross_encoder_dir, tiny_policy_dir):
    from relsum.pipelines.demo import DemoConfig, run

    golden, log = _small_sample(tmp_path, sample_dir)
    config = load_config(DemoConfig, None, [
        f"out_dir={tmp_path / 'demo'}", f"reward_model={tiny_cross_encoder_dir}", f"golden={golden}",
        f"pairs.search_log={log}", "pairs.filter.mode=top_fraction", "pairs.filter.top_fraction=1.0",
        f"train.train.policy.model_dir={tiny_policy_dir}", "train.train.grpo.max_steps=2",
        "train.train.policy.max_summary_tokens=12", "train.n_boot=50", "train.heldout_samples=2", "n_boot=50"])
    result = run(config)

    assert {"none", "desc", "sum_ref", "grpo"} <= set(result["evaluation"]["subsets"]["full"]["candidates"])
    heldout = result["train"]["heldout"]
    assert heldout["heldout_pairs"] > 0 and len(heldout["reward_diff_ci95"]) == 2
    assert heldout["sampled_k"] == 2 and len(heldout["sampled_reward_diff_ci95"]) == 2
    assert "expected, 2 samples" in result["report_text"] and "greedy summary" in result["report_text"]
    assert "Held-out reward" in result["report_text"] and "| grpo |" in result["report_text"]
    assert (tmp_path / "demo" / "evaluation" / "report.html").exists()
    saved = json.loads((tmp_path / "demo" / "demo_result.json").read_text())
    assert saved["train"]["model_version"] == result["train"]["model_version"]

    client = mlflow.MlflowClient(tracking_uri=config.train.tracking.resolved_uri())
    run_info = client.get_run(result["train"]["mlflow_run_id"])
    assert {"heldout_reward_trained", "heldout_sampled_reward_diff_ci_low"} <= set(run_info.data.metrics)
    assert run_info.data.params["relsum.algo"] == "grpo"
    history = client.get_metric_history(run_info.info.run_id, "reward")
    assert len(history) >= 1  # TRL's per-step reward, logged through its MLflow callback
    version = client.get_model_version(config.train.tracking.registered_model, result["train"]["model_version"])
    assert version.run_id == run_info.info.run_id
    artifacts = {a.path for a in client.list_artifacts(run_info.info.run_id)}
    assert {"adapter", "training_set_stats.json"} <= artifacts
