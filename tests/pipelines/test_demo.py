"""`relsum demo` end to end at tiny size: every stage runs for real and MLflow can be read back."""

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from relsum.core.config import load_config
from relsum.policy.served import served_summary


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
def test_demo_runs_every_stage_and_tracks_in_mlflow(tmp_path, sample_dir, tiny_cross_encoder_dir,
                                                    tiny_policy_dir):
    from relsum.pipelines.configs import DemoConfig
    from relsum.pipelines.demo import run

    golden, log = _small_sample(tmp_path, sample_dir)
    config = load_config(DemoConfig, None, [
        f"out_dir={tmp_path / 'demo'}", f"reward_model={tiny_cross_encoder_dir}", f"golden={golden}",
        f"pairs.search_log={log}", "pairs.filter.mode=top_fraction", "pairs.filter.top_fraction=1.0",
        f"train.trainer.policy.model_dir={tiny_policy_dir}", "train.trainer.grpo.max_steps=2",
        "train.trainer.policy.max_summary_tokens=12", "train.n_boot=50", "train.heldout_samples=2",
        "n_boot=50",
        "golden_products=45", "examples=2"])
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
    # peak RSS per stage beside the seconds (issue 22): every stage, plausible sizes, in the printed report
    assert set(saved["peak_rss_mb"]) == set(saved["timings"]) >= {"validate", "train", "evaluate"}
    assert all(100 < mb < 8000 for mb in saved["peak_rss_mb"].values()), saved["peak_rss_mb"]
    assert "peak RSS (MB)" in result["report_text"]
    assert saved["paths"]["policy_dir"] == str(tiny_policy_dir)
    assert (Path(saved["paths"]["adapter_dir"]) / "adapter_config.json").exists()
    grpo = pd.read_parquet(saved["paths"]["summaries"]["grpo"])
    assert len(grpo) and grpo["summary"].map(served_summary).tolist() == grpo["summary"].tolist()

    # the seeded golden subset: whole queries, at most 45 products, said in the output
    subset = pd.read_csv(saved["paths"]["golden"] + "/judgments.csv", dtype=str)
    assert 0 < subset["product_id"].nunique() <= 45 and set(grpo["product_id"]) == set(subset["product_id"])
    assert "seeded subset" in result["report_text"] and "golden_products=45" in result["report_text"]
    assert [line.split(",")[0] for line in result["headline"]] == ["grpo vs none", "sum_ref vs none"]
    assert "Answer (NDCG@5 gain over title only" in result["report_text"]
    assert all("this set detects changes of" in line for line in result["headline"])
    # per-label score shifts, groundedness and the side-by-side examples
    assert heldout["label_shifts"] and "score shift r(q,[t;s]) by label" in result["report_text"]
    assert "Groundedness on the golden products" in result["report_text"]
    assert 0.0 <= result["groundedness"]["sum_ref"]["groundedness"] <= 1.0
    page = (tmp_path / "demo" / "evaluation" / "report.html").read_text()
    assert "Examples: sum_ref and grpo side by side" in page and "Groundedness" in page
    example_title = pd.read_json(golden / "products.jsonl", lines=True).set_index("product_id")["title"]
    assert any(str(t).split()[0] in page for t in example_title.loc[grpo["product_id"]].head(20))

    client = mlflow.MlflowClient(tracking_uri=config.train.tracking.resolved_uri())
    run_info = client.get_run(result["train"]["mlflow_run_id"])
    assert {"heldout_reward_trained", "heldout_sampled_reward_diff_ci_low"} <= set(run_info.data.metrics)
    assert run_info.data.params["relsum.algo"] == "grpo"
    history = client.get_metric_history(run_info.info.run_id, "reward")
    assert len(history) >= 1  # TRL's per-step reward, logged through its MLflow callback
    version = client.get_model_version(config.train.tracking.registered_model,
                                       result["train"]["model_version"])
    assert version.run_id == run_info.info.run_id
    artifacts = {a.path for a in client.list_artifacts(run_info.info.run_id)}
    assert {"adapter", "training_set_stats.json", "evaluation"} <= artifacts
    # the evaluation is on the training run, so `relsum compare` shows numbers, not n/a
    metrics = client.get_run(run_info.info.run_id).data.metrics
    assert {"eval.full.ndcg_at_5", "eval.tail.r_at_90p.lo", "baseline.sum_ref.full.ndcg_at_5",
            "groundedness.grpo", "groundedness.sum_ref.lo"} <= set(metrics)
    assert any(k.startswith("heldout_label_") and k.endswith("_shift") for k in metrics)
    from relsum.pipelines.compare import collect
    from relsum.pipelines.configs import CompareConfig

    record = collect(CompareConfig(tracking=config.train.tracking, runs=[run_info.info.run_id]))[0]
    value, lo, hi = record["metrics"]["full.ndcg@5"]
    assert lo <= value <= hi and value == value


@pytest.mark.slow
def test_demo_with_two_seeds_trains_and_reports_each(tmp_path, sample_dir, tiny_cross_encoder_dir,
                                                     tiny_policy_dir):
    from relsum.pipelines.configs import DemoConfig
    from relsum.pipelines.demo import run

    golden, log = _small_sample(tmp_path, sample_dir, n_golden=3, n_train=3)
    config = load_config(DemoConfig, None, [
        f"out_dir={tmp_path / 'demo'}", f"reward_model={tiny_cross_encoder_dir}", f"golden={golden}",
        f"pairs.search_log={log}", "pairs.filter.mode=top_fraction", "pairs.filter.top_fraction=1.0",
        f"train.trainer.policy.model_dir={tiny_policy_dir}", "train.trainer.grpo.max_steps=1",
        "train.trainer.policy.max_summary_tokens=8", "train.n_boot=20", "train.heldout_samples=0",
        "n_boot=20",
        "train_seeds=[3,4]", "examples=1"])
    result = run(config)

    assert {"grpo_s3", "grpo_s4", "sum_ref"} <= set(result["evaluation"]["subsets"]["full"]["candidates"])
    assert set(result["paths"]["adapters"]) == {"grpo_s3", "grpo_s4"}
    assert result["paths"]["adapters"]["grpo_s3"] != result["paths"]["adapters"]["grpo_s4"]
    client = mlflow.MlflowClient(tracking_uri=config.train.tracking.resolved_uri())
    for name in ("grpo_s3", "grpo_s4"):
        assert f"{name} {result['seeds'][name]['heldout']['reward_trained']:.4f}" in result["report_text"]
        metrics = client.get_run(result["seeds"][name]["mlflow_run_id"]).data.metrics
        assert metrics[f"groundedness.{name}"] == pytest.approx(result["groundedness"][name]["groundedness"])
        assert "eval.full.ndcg_at_5" in metrics
