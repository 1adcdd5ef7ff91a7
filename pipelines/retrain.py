"""Steps of the Airflow DAGs (``dags/``): each is one task, keyed by a data-interval partition.

Every step writes under ``<runs_dir>/<dag_id>/<interval key>/<step>/`` (default runs_dir:
``<RELSUM_HOME>/runs``), atomically, and ends by writing ``_SUCCESS.json`` with a fingerprint of its
inputs and its outputs. A retry or rerun with the same inputs returns the committed outputs unchanged,
so a rerun for the same interval leaves the same files. Training additionally looks its model version up
in MLflow by the tags ``relsum.interval`` + ``relsum.fingerprint`` (and the step's ``train_result.json``)
before training, so one interval never registers two versions. Steps take and return only paths, URIs,
version strings and small dicts (what goes through XCom).

retrain: validate -> extract -> score_filter -> train -> evaluate -> register -> gate
catalog summaries: validate, resolve_champion -> summarize_catalog
interleaving export: resolve_champion -> summarize_candidates -> export

The shared machinery (``load``, ``interval_key``, ``run_once``) is in :mod:`relsum.pipelines.dag_common`,
evaluate/register/gate in :mod:`relsum.pipelines.retrain_evaluate` and the champion DAGs' steps in
:mod:`relsum.pipelines.champion_steps`; every step is re-exported here, the import path the DAGs use. The
config, ``DagConfig``, is imported from :mod:`relsum.pipelines.configs` only.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from relsum.core.config import to_dict
from relsum.lifecycle.registry import TAG_FINGERPRINT, TAG_INTERVAL
from relsum.pipelines.champion_steps import export, resolve_champion, summarize_candidates, summarize_catalog
from relsum.pipelines.configs import DagConfig
from relsum.pipelines.dag_common import (
    CATALOG,
    EXPORT,
    RETRAIN,
    dag_scorer,
    file_sha,
    fingerprint,
    interval_key,
    load,
    reward_model_dir,
    run_once,
    task_setup,
    validate_inputs,
)
from relsum.pipelines.retrain_evaluate import evaluate, gate, register

logger = logging.getLogger(__name__)

__all__ = ["CATALOG", "EXPORT", "RETRAIN", "evaluate", "export", "extract", "gate", "interval_key", "load",
           "register", "resolve_champion", "score_filter", "summarize_candidates", "summarize_catalog",
           "task_setup", "train", "validate_inputs"]


# ---- relsum_retrain -------------------------------------------------------------------------------

def extract(config: DagConfig, key: str, start: str | None, end: str | None) -> dict:
    """Validated inputs -> the interval's deduplicated pairs joined to the catalog (``pairs_raw.parquet``)."""
    from relsum.data.io import write_json_atomic, write_parquet_atomic
    from relsum.pipelines.build_pairs import extract_range

    pc = dataclasses.replace(config.pairs, start_date=start, end_date=end)
    out = config.step_dir(RETRAIN, key, "extract")

    def body() -> dict:
        pairs, stats = extract_range(pc, out)
        if pairs.empty:
            raise ValueError(f"no search-log pairs in [{start}, {end}): nothing to train on")
        write_parquet_atomic(pairs, out / "pairs_raw.parquet")
        write_json_atomic(stats | {"pairs": int(len(pairs))}, out / "extract_stats.json")
        return {"pairs_raw": str(out / "pairs_raw.parquet"), "stats": str(out / "extract_stats.json")}

    return run_once(out, fingerprint(to_dict(pc), file_sha(pc.search_log) if Path(pc.search_log).is_file()
                                     else pc.search_log), body)


def score_filter(config: DagConfig, key: str, extracted: dict) -> dict:
    """Score r(q,t) and r(q,[t;d]) with the one scorer, label, filter by the gap: ``pairs.parquet``."""
    from relsum.data.io import read_table
    from relsum.pipelines.build_pairs import score_and_filter

    out = config.step_dir(RETRAIN, key, "pairs")

    def body() -> dict:
        result = score_and_filter(read_table(extracted["pairs_raw"]), dag_scorer(config), config.pairs.filter,
                                  out, json.loads(Path(extracted["stats"]).read_text()))
        return dataclasses.asdict(result.paths) | {"kept": int(result.stats["kept"])}

    return run_once(out, fingerprint(to_dict(config.pairs.filter), reward_model_dir(config),
                                     file_sha(extracted["pairs_raw"])), body)


def train(config: DagConfig, key: str, pairs: dict) -> dict:
    """Train and register one version for the interval, or reuse the one already registered for it."""
    from relsum.lifecycle import registry
    from relsum.pipelines import train as train_stage

    ts = config.train
    out = config.step_dir(RETRAIN, key, "train")
    ts.trainer.train_data, ts.trainer.out_dir = pairs["pairs"], str(out)
    ts.trainer.scorer_model_dir = reward_model_dir(config)
    fp = fingerprint(to_dict(ts), file_sha(pairs["pairs"]))
    tags = {TAG_INTERVAL: f"{RETRAIN}/{key}", TAG_FINGERPRINT: fp}

    def body() -> dict:
        tracking, client = ts.tracking, registry.client(ts.tracking)
        found = registry.find_version(tracking, tags)
        result_file = out / "train_result.json"
        if found is None and result_file.is_file():  # trained and registered, died before tagging
            previous = json.loads(result_file.read_text())
            if previous.get("model_version"):
                found = client.get_model_version(tracking.registered_model, previous["model_version"])
        if found is None:
            result = train_stage.run(ts)
            found = client.get_model_version(tracking.registered_model, result.model_version)
        for tag, value in tags.items():
            client.set_model_version_tag(tracking.registered_model, found.version, tag, value)
        client.set_tag(found.run_id, TAG_INTERVAL, tags[TAG_INTERVAL])
        resolved = registry.resolve(tracking,
                                    client.get_model_version(tracking.registered_model, found.version),
                                    out / "downloaded")
        return resolved | {"interval": tags[TAG_INTERVAL]}

    return run_once(out, fp, body)
