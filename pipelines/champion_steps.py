"""Steps of the ``relsum_catalog_summaries`` and ``relsum_interleaving_export`` DAGs (champion in, files out).

Both DAGs start from the model version behind the champion alias that the retrain DAG's gate moves;
:mod:`relsum.pipelines.retrain` (the import path the DAGs use) re-exports these steps.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from relsum.core.config import to_dict
from relsum.core.paths import home
from relsum.pipelines.configs import DagConfig
from relsum.pipelines.dag_common import (
    CATALOG,
    EXPORT,
    catalog_subset,
    dag_scorer,
    file_sha,
    fingerprint,
    reward_model_dir,
    run_once,
)
from relsum.summarize.config import SummarizeConfig

# ---- relsum_catalog_summaries and relsum_interleaving_export ----------------------------------------

def resolve_champion(config: DagConfig, dag_id: str, key: str) -> dict:
    """Alias -> version -> adapter folder + policy dir (from the version's tags)."""
    from relsum.lifecycle import registry

    champ = registry.champion_version(config.train.tracking, config.gate.alias)
    if champ is None:
        raise ValueError(f"no '{config.gate.alias}' alias on {config.train.tracking.registered_model}: "
                         "run the relsum_retrain DAG first")
    return registry.resolve(config.train.tracking, champ, config.step_dir(dag_id, key, "champion"))


def _summarize_config(config: DagConfig, champion: dict, **changes: Any) -> SummarizeConfig:
    stamp = f"{config.train.tracking.registered_model}/v{champion['version']}"
    return dataclasses.replace(config.summarize, model_dir=champion["policy_dir"],
                               adapter_dir=champion["adapter_dir"],
                               model_version=stamp, **changes)


def summarize_catalog(config: DagConfig, key: str, champion: dict) -> dict:
    """New and changed products with the champion into ``<runs>/relsum_catalog_summaries/partition=<key>``."""
    from relsum.pipelines import summarize

    root = config.summarize.out_dir or str(Path(config.runs_dir or home() / "runs") / CATALOG)
    manifest = summarize.run(_summarize_config(config, champion, out_dir=root), partition=key)
    return {"partition_dir": str(summarize.partition_dir(root, key)), "run_id": manifest["run_id"],
            "counts": manifest["counts"], "model_version": champion["version"]}


def summarize_candidates(config: DagConfig, key: str, champion: dict) -> dict:
    """Candidates (default: golden judged pairs) and the champion's summaries of their products."""
    from relsum.data.golden import find_catalog, load_golden
    from relsum.data.io import read_table, write_parquet_atomic
    from relsum.pipelines import summarize
    from relsum.pipelines.evaluate import load_summaries, write_summaries

    out = config.step_dir(EXPORT, key, "summaries")
    xc = config.export

    def body() -> dict:
        golden = load_golden(config.evaluate.golden)
        if xc.candidates:
            cands = read_table(xc.candidates)
        else:
            cands = golden.judgments[["query_id", "product_id"]].merge(golden.queries[["query_id", "query"]])
        if xc.max_queries:
            cands = cands[cands["query_id"].isin(sorted(cands["query_id"].unique())[:xc.max_queries])]
        write_parquet_atomic(cands[["query_id", "query", "product_id"]].reset_index(drop=True),
                             out / "candidates.parquet")
        source = xc.catalog or str(find_catalog(Path(config.evaluate.golden)))
        catalog = catalog_subset(source, set(cands["product_id"].astype(str)), out / "catalog")
        sc = _summarize_config(config, champion, catalog=catalog, out_dir=str(out / "job"), incremental=False)
        summarize.run(sc)
        # one file (not the job folder) so the export step can fingerprint it by its bytes
        write_summaries(load_summaries(sc.out_dir), out / "summaries.parquet")
        return {"candidates": str(out / "candidates.parquet"), "catalog": catalog,
                "summaries": str(out / "summaries.parquet"), "model_version": champion["version"]}

    return run_once(out, fingerprint(champion, to_dict(xc), config.evaluate.golden), body)


def export(config: DagConfig, key: str, prepared: dict) -> dict:
    """Team-draft lists, champion summaries (variation) against title-only ranking (control)."""
    from relsum.pipelines.configs import ExportConfig
    from relsum.pipelines.interleaving import run_export

    out = config.step_dir(EXPORT, key, "export")
    xc = config.export
    ec = ExportConfig(candidates=prepared["candidates"], catalog=prepared["catalog"],
                      summaries=prepared["summaries"],
                      reward_model=reward_model_dir(config), out_dir=str(out), seed=xc.seed, length=xc.length,
                      experiment_id=f"{xc.experiment_id}-v{prepared['model_version']}")
    fp = fingerprint(to_dict(ec), file_sha(prepared["candidates"]), file_sha(prepared["summaries"]))
    return run_once(out, fp, lambda: run_export(ec, scorer=dag_scorer(config)).paths.to_dict())
