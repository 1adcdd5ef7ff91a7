"""The three DAGs under a real Airflow 3 (SQLite metadata DB in a temp AIRFLOW_HOME) on tiny models.

The module fixture migrates a fresh metadata DB, points RELSUM_HOME at a temp folder (MLflow sqlite
store included) and builds one tiny policy; the tests then run the DAGs end to end with ``dag.test()``
in order: retrain (twice for the same interval), catalog summaries (two days), interleaving export.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
DAG_IDS = {"relsum_retrain", "relsum_catalog_summaries", "relsum_interleaving_export"}
WEEK = dt.datetime(2026, 10, 19, tzinfo=dt.UTC)  # Monday: the interval is the week 2026-10-12 .. 2026-10-19

# Not importorskip: importing airflow at collection would configure it before AIRFLOW_HOME is set.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("airflow") is None,
                                reason="Airflow is the optional 'airflow' extra")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Temp AIRFLOW_HOME with a migrated SQLite DB and a temp RELSUM_HOME (restored afterwards)."""
    root = tmp_path_factory.mktemp("airflow")
    values = {"AIRFLOW_HOME": str(root / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
              "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS), "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
              "RELSUM_HOME": str(root / "relsum_home"), "HF_HUB_OFFLINE": "1"}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in values.items():
            mp.setenv(key, value)
        airflow_bin = Path(sys.executable).with_name("airflow")
        done = subprocess.run([str(airflow_bin), "db", "migrate"], env=os.environ.copy(), capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        yield root


@pytest.fixture(scope="module")
def overrides(env, tiny_cross_encoder_dir):
    """Small-size config: tiny scorer and policy, 2 GRPO steps, 6 golden queries, 12 catalog products."""
    import pandas as pd

    from relsum.core.paths import SAMPLE_DIR
    from relsum.data.contracts import validate_catalog
    from relsum.data.io import read_table
    from relsum.policy.config import TinyPolicyConfig
    from relsum.policy.tiny import build_tiny_policy

    catalog = validate_catalog(read_table(SAMPLE_DIR / "products.jsonl")).valid
    # As tests/training/conftest.py (~20 s): smaller warm-ups write empty summaries.
    policy = build_tiny_policy(catalog.head(300), env / "tiny_policy", TinyPolicyConfig(
        vocab_size=1000, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4, num_kv_heads=2,
        max_positions=512, max_prompt_tokens=128, max_summary_tokens=24, epochs=8, batch_size=8,
        learning_rate=4e-3, max_seconds=0, seed=0))
    lines = (SAMPLE_DIR / "products.jsonl").read_text().splitlines()[:12]
    (env / "catalog12.jsonl").write_text("\n".join(lines) + "\n")
    assert len(pd.read_json(env / "catalog12.jsonl", lines=True)) == 12
    return [f"reward_model={tiny_cross_encoder_dir}", f"train.trainer.policy.model_dir={policy}",
            "pairs.filter.mode=top_fraction", "pairs.filter.top_fraction=0.3",
            "train.trainer.policy.lora_r=4", "train.trainer.policy.lora_alpha=8",
            "train.trainer.policy.max_prompt_tokens=96",
            "train.trainer.policy.max_summary_tokens=12", "train.trainer.grpo.per_device_train_batch_size=4",
            "train.trainer.grpo.gradient_accumulation_steps=1", "train.trainer.grpo.max_steps=2",
            "train.trainer.grpo.learning_rate=1e-3", "train.trainer.max_train_rows=16",
            "train.holdout_fraction=0.05",
            "train.n_boot=20", "train.n_sample_summaries=3", "evaluate.max_queries=4", "evaluate.n_boot=20",
            f"summarize.catalog={env / 'catalog12.jsonl'}", "summarize.max_new_tokens=8",
            "summarize.batch_size=8", "export.max_queries=2"]


@pytest.fixture(scope="module")
def dagbag(env):
    from airflow.models import DagBag

    # Airflow 3.3 dropped include_examples; AIRFLOW__CORE__LOAD_EXAMPLES=False (set above) does the same.
    return DagBag(dag_folder=str(DAGS))


def _tracking():
    from relsum.lifecycle.config import TrackingConfig

    return TrackingConfig()


def _run(dag, logical_date, overrides):
    dagrun = dag.test(logical_date=logical_date, run_conf={"overrides": overrides})
    assert dagrun.state == "success", [(ti.task_id, ti.state) for ti in dagrun.get_task_instances()]
    return dagrun


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_dagbag_imports_the_three_dags(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) >= DAG_IDS
    retrain = dagbag.get_dag("relsum_retrain")
    order = ["validate", "extract", "score_filter", "train", "evaluate", "register", "gate"]
    assert set(retrain.task_ids) == set(order)
    for upstream, downstream in zip(order, order[1:], strict=False):
        if downstream != "register":
            assert upstream in retrain.get_task(downstream).upstream_task_ids, (upstream, downstream)
    assert {"train", "evaluate"} <= retrain.get_task("register").upstream_task_ids
    assert retrain.default_args["retries"] >= 1 and retrain.default_args["execution_timeout"]
    assert "validate" in (dagbag.get_dag("relsum_catalog_summaries").get_task("summarize_catalog")
                          .upstream_task_ids)
    assert dagbag.get_dag("relsum_interleaving_export").schedule is None


def test_dag_files_are_thin():
    """Only airflow.sdk, datetime and stdlib at module level: relsum/torch load inside the tasks."""
    import ast

    for path in DAGS.glob("*.py"):
        tree = ast.parse(path.read_text())
        top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        names = {(n.module if isinstance(n, ast.ImportFrom) else n.names[0].name) for n in top}
        assert names <= {"__future__", "datetime", "airflow.sdk"}, (path.name, names)


@pytest.mark.slow
def test_retrain_dag_end_to_end_and_rerun_is_idempotent(env, dagbag, overrides):
    from mlflow import MlflowClient

    from relsum.lifecycle.registry import TAG_INTERVAL

    dag = dagbag.get_dag("relsum_retrain")
    _run(dag, WEEK, overrides)
    tracking = _tracking()
    client = MlflowClient(tracking.resolved_uri())
    runs_dir = env / "relsum_home" / "runs" / "relsum_retrain"
    (key,) = [p.name for p in runs_dir.iterdir()]
    assert key == "2026-10-12"
    stats = json.loads((runs_dir / key / "pairs" / "filter_stats.json").read_text())
    assert stats["date_range"] == ["2026-10-12", "2026-10-19"] and stats["kept"] > 0
    versions = client.search_model_versions(f"name='{tracking.registered_model}'")
    assert [v.tags[TAG_INTERVAL] for v in versions] == [f"relsum_retrain/{key}"]
    version = versions[0]
    assert client.get_model_version_by_alias(tracking.registered_model, "champion").version == version.version
    metrics = client.get_run(version.run_id).data.metrics
    for subset in ("full", "tail"):
        for metric in ("ndcg_at_5", "r_at_90p"):
            name = f"eval.{subset}.{metric}"
            assert metrics[f"{name}.lo"] <= metrics[name] <= metrics[f"{name}.hi"], name
    assert "baseline.none.full.ndcg_at_5" in metrics and "baseline.sum_ref.tail.ndcg_at_5" in metrics
    gate = json.loads((runs_dir / key / "gate" / "gate.json").read_text())
    assert gate["promoted"] and gate["champion"] == str(version.version)
    before = _files(runs_dir / key)
    n_runs = len(client.search_runs([client.get_experiment_by_name(tracking.experiment).experiment_id]))
    # Rerun the same interval; drop the train step's marker so it must find its version in MLflow.
    (runs_dir / key / "train" / "_SUCCESS.json").unlink()
    _run(dag, WEEK, overrides)
    after = client.search_model_versions(f"name='{tracking.registered_model}'")
    assert [str(v.version) for v in after] == [str(version.version)]
    experiment_id = client.get_experiment_by_name(tracking.experiment).experiment_id
    assert len(client.search_runs([experiment_id])) == n_runs
    assert _files(runs_dir / key) == before
    assert client.get_run(version.run_id).data.metrics == metrics


@pytest.mark.slow
def test_catalog_summaries_dag_partitions_with_the_champion(env, dagbag, overrides):
    from relsum.summarize.job import read_job_output

    dag = dagbag.get_dag("relsum_catalog_summaries")
    _run(dag, dt.datetime(2026, 10, 20, tzinfo=dt.UTC), overrides)
    _run(dag, dt.datetime(2026, 10, 21, tzinfo=dt.UTC), overrides)
    root = env / "relsum_home" / "runs" / "relsum_catalog_summaries"
    parts = sorted(p.name for p in root.glob("partition=*"))
    assert parts == ["partition=2026-10-19", "partition=2026-10-20"]
    first, second = (read_job_output(root / p) for p in parts)
    assert len(first) == 12 and set(first["model_version"]) == {"relsum-summarizer/v1"}
    assert first[["product_id", "summary"]].equals(second[["product_id", "summary"]])
    manifest = json.loads((root / parts[1] / "manifest.json").read_text())
    assert manifest["counts"]["carried_over"] == 12, manifest["counts"]


@pytest.mark.slow
def test_interleaving_export_dag(env, dagbag, overrides):
    import pandas as pd

    dag = dagbag.get_dag("relsum_interleaving_export")
    _run(dag, dt.datetime(2026, 10, 22, tzinfo=dt.UTC), overrides)
    (out,) = (env / "relsum_home" / "runs" / "relsum_interleaving_export").glob("*/export")
    frame = pd.read_parquet(out / "interleaved.parquet")
    assert frame["query_id"].nunique() == 2 and set(frame["experiment_id"]) == {"relsum-interleaving-v1"}
    manifest = json.loads((out / "export_manifest.json").read_text())
    summaries = pd.read_parquet(out.parent / "summaries" / "summaries.parquet")
    assert set(frame["product_id"]) <= set(summaries["product_id"])
    assert manifest["products_without_summary"] < 0.5 * len(summaries), manifest  # the champion wrote them
