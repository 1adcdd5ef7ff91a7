"""The model-judging steps of the ``relsum_retrain`` DAG: evaluate the new version, log its metrics, gate the
alias.

These steps judge a trained version against the champion; :mod:`relsum.pipelines.retrain` (the import
path the DAGs use) re-exports them. The golden-set subsetting for smoke runs lives here because only
evaluation uses it.
"""

from __future__ import annotations

import json
from pathlib import Path

from relsum.core.config import to_dict
from relsum.pipelines.configs import DagConfig, EvaluateConfig
from relsum.pipelines.dag_common import (
    RETRAIN,
    catalog_subset,
    dag_scorer,
    fingerprint,
    reward_model_dir,
    run_once,
)


def golden_smoke_subset(config: DagConfig, out: Path) -> str:
    """The golden folder, or a copy with ``max_queries`` queries (half tail) for smoke runs."""
    import pandas as pd

    from relsum.data.golden import find_catalog, load_golden
    from relsum.data.io import write_csv_atomic, write_text_atomic

    ec = config.evaluate
    if not ec.max_queries:
        return ec.golden
    golden = load_golden(ec.golden)
    judged = (golden.queries[golden.queries["query_id"].isin(golden.judgments["query_id"])]
              .sort_values("query_id"))
    tail = judged[judged["tail"]].head((ec.max_queries + 1) // 2)
    keep = set(pd.concat([tail, judged[~judged["tail"]].head(ec.max_queries - len(tail))])["query_id"])
    sub = out / "golden"
    sub.mkdir(parents=True, exist_ok=True)
    src = Path(ec.golden)
    for name in ("queries.csv", "judgments.csv"):
        frame = pd.read_csv(src / name, dtype=str, keep_default_na=False)
        write_csv_atomic(frame[frame["query_id"].isin(keep)], sub / name)
    for name in ("relsum.yaml",):
        if (src / name).is_file():
            write_text_atomic((src / name).read_text(), sub / name)
    products = set(pd.read_csv(sub / "judgments.csv", dtype=str)["product_id"])
    catalog_subset(str(find_catalog(src)), products, sub / "products.jsonl")
    return str(sub)


def evaluate(config: DagConfig, key: str, trained: dict) -> dict:
    """Summarize the golden products with the new adapter, the champion and the reference; evaluate all."""
    from relsum.data.golden import load_golden
    from relsum.lifecycle import registry
    from relsum.pipelines import evaluate as evaluate_stage

    out = config.step_dir(RETRAIN, key, "evaluate")
    tracking = config.train.tracking

    def body() -> dict:
        champ = registry.champion_version(tracking, config.gate.alias)
        champ_info = None
        if champ is not None and str(champ.version) != trained["version"]:
            champ_info = registry.resolve(tracking, champ, config.step_dir(RETRAIN, key, "champion"))
        golden_dir = golden_smoke_subset(config, out)
        products = evaluate_stage.golden_products(load_golden(golden_dir))
        models = {"challenger": (trained["policy_dir"], trained["adapter_dir"]),
                  "sum_ref": (trained["policy_dir"], None)}
        if champ_info:
            models["champion"] = (champ_info["policy_dir"], champ_info["adapter_dir"])
        summaries = {}
        for name, (policy, adapter) in models.items():
            # served_summary is applied inside generation: the gate judges the strings the catalog serves
            summaries[name] = str(out / "summaries" / f"{name}.parquet")
            evaluate_stage.summarize_golden(products, config.train.trainer.policy, summaries[name], policy,
                                            adapter)
        ec = config.evaluate
        result = evaluate_stage.run(EvaluateConfig(
            golden=golden_dir, reward_model=reward_model_dir(config), summaries=summaries,
            out_dir=str(out / "evaluation"),
            k=ec.k, min_precision=ec.min_precision, n_boot=ec.n_boot), scorer=dag_scorer(config))
        # XCom / run_once keep plain JSON: file paths, not the typed result
        return {"metrics": result.paths.metrics, "report": [result.paths.md, result.paths.html],
                "champion_version": champ_info["version"] if champ_info else None}

    # The champion compared against is pinned by the committed outputs (champion_version): after the gate
    # promotes this version, a rerun must not re-evaluate it against itself.
    return run_once(out, fingerprint(trained, to_dict(config.evaluate)), body)


def register(config: DagConfig, key: str, trained: dict, evaluated: dict) -> dict:
    """Attach the evaluation metrics (scheme in :mod:`relsum.lifecycle.registry`) to the version's run;
    idempotent."""
    from relsum.lifecycle import registry

    metrics = json.loads(Path(evaluated["metrics"]).read_text())
    artifacts = [evaluated["metrics"], *evaluated.get("report", [])]
    flat = registry.log_evaluation(config.train.tracking, trained["run_id"], metrics,
                                   evaluated.get("champion_version"),
                                   [p for p in artifacts if Path(p).is_file()])
    return {"version": trained["version"], "run_id": trained["run_id"], "n_metrics": len(flat),
            "tracking_uri": config.train.tracking.resolved_uri()}


def gate(config: DagConfig, key: str, registered: dict) -> dict:
    """Move the champion alias to the new version only if it passes the gate; the decision is saved."""
    from relsum.data.io import write_json_atomic
    from relsum.lifecycle import registry

    out = config.step_dir(RETRAIN, key, "gate")

    def body() -> dict:
        decision = registry.apply_gate(config.train.tracking, registered["version"], config.gate)
        write_json_atomic(decision, out / "gate.json")
        return decision

    return run_once(out, fingerprint(registered["version"], to_dict(config.gate)), body)
