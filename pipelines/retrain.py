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

The shared machinery (``DagConfig``, ``interval_key``, ``_once``) is in :mod:`relsum.pipelines.dag_common`,
evaluate/register/gate in :mod:`relsum.pipelines.retrain_evaluate` and the champion DAGs' steps in
:mod:`relsum.pipelines.champion_steps`; everything is re-exported here, the import path the DAGs use.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from relsum.config import to_dict
from relsum.pipelines.champion_steps import export, resolve_champion, summarize_candidates, summarize_catalog
from relsum.pipelines.dag_common import (
    CATALOG,
    EXPORT,
    RETRAIN,
    DagConfig,
    EvalSection,
    ExportSection,
    _file_sha,
    _fingerprint,
    _once,
    _reward_model,
    _scorer,
    interval_key,
    load,
    task_setup,
    validate_inputs,
)
from relsum.pipelines.retrain_evaluate import evaluate, gate, register
from relsum.registry import TAG_FINGERPRINT, TAG_INTERVAL

logger = logging.getLogger(__name__)

__all__ = ["CATALOG", "EXPORT", "RETRAIN", "DagConfig", "EvalSection", "ExportSection", "evaluate", "export",
           "extract", "gate", "interval_key", "load", "register", "resolve_champion", "score_filter",
           "summarize_candidates", "summarize_catalog", "task_setup", "train", "validate_inputs"]


# ---- relsum_retrain -------------------------------------------------------------------------------

def extract(config: DagConfig, key: str, start: str | None, end: str | None) -> dict:
    """Validated inputs -> the interval's deduplicated pairs joined to the catalog (``pairs_raw.parquet``)."""
    from relsum.data.io import write_csv_atomic, write_json_atomic, write_parquet_atomic
    from relsum.pipelines.build_pairs import extract_pairs, load_inputs

    pc = dataclasses.replace(config.pairs, start_date=start, end_date=end)
    out = config.step_dir(RETRAIN, key, "extract")

    def body() -> dict:
        catalog, log, rejects = load_inputs(pc)
        (out / "rejects").mkdir(exist_ok=True)
        for table, frame in rejects.items():
            write_csv_atomic(frame, out / "rejects" / f"{table}.csv")
        pairs, unmatched = extract_pairs(catalog, log, pc)
        if pairs.empty:
            raise ValueError(f"no search-log pairs in [{start}, {end}): nothing to train on")
        write_parquet_atomic(pairs, out / "pairs_raw.parquet")
        write_json_atomic({"log_rows_in": int(len(log) + len(rejects["search_log"])),
                           "log_rows_rejected": int(len(rejects["search_log"])),
                           "catalog_rows_rejected": int(len(rejects["catalog"])),
                           "pairs_without_catalog_product": int(len(unmatched)), "pairs": int(len(pairs)),
                           "date_range": [start, end]}, out / "extract_stats.json")
        return {"pairs_raw": str(out / "pairs_raw.parquet"), "stats": str(out / "extract_stats.json")}

    return _once(out, _fingerprint(to_dict(pc), _file_sha(pc.search_log) if Path(pc.search_log).is_file() else
                                   pc.search_log), body)


def score_filter(config: DagConfig, key: str, extracted: dict) -> dict:
    """Score r(q,t) and r(q,[t;d]) with the one scorer, label, filter by the gap: ``pairs.parquet``."""
    from relsum.data.io import read_table, write_json_atomic, write_parquet_atomic
    from relsum.pairs import filter_pairs, label_and_gap
    from relsum.pipelines.build_pairs import plot_gap_histogram

    out = config.step_dir(RETRAIN, key, "pairs")

    def body() -> dict:
        pairs = read_table(extracted["pairs_raw"])
        scorer = _scorer(config)
        queries, titles = pairs["query"].tolist(), pairs["title"].tolist()
        r_title = scorer.score(queries, titles)
        r_desc = scorer.score(queries, titles, pairs["text"].tolist())
        kept, dropped, stats = filter_pairs(label_and_gap(pairs, r_title, r_desc), config.pairs.filter)
        stats.update(json.loads(Path(extracted["stats"]).read_text()))
        stats["scorer_fingerprint"] = getattr(scorer, "fingerprint", None)
        paths = {"pairs": out / "pairs.parquet", "dropped": out / "dropped.parquet",
                 "stats": out / "filter_stats.json", "histogram": out / "gap_histogram.png"}
        write_parquet_atomic(kept, paths["pairs"])
        write_parquet_atomic(dropped, paths["dropped"])
        write_json_atomic(stats, paths["stats"])
        plot_gap_histogram(stats, config.pairs.filter, paths["histogram"])
        return {k: str(v) for k, v in paths.items()} | {"kept": int(stats["kept"])}

    return _once(out, _fingerprint(to_dict(config.pairs.filter), _reward_model(config),
                                   _file_sha(extracted["pairs_raw"])), body)


def train(config: DagConfig, key: str, pairs: dict) -> dict:
    """Train and register one version for the interval, or reuse the one already registered for it."""
    from relsum import registry
    from relsum.pipelines import train as train_stage

    ts = config.train
    out = config.step_dir(RETRAIN, key, "train")
    ts.train.train_data, ts.train.out_dir = pairs["pairs"], str(out)
    ts.train.scorer_model_dir = _reward_model(config)
    fp = _fingerprint(to_dict(ts), _file_sha(pairs["pairs"]))
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
            found = client.get_model_version(tracking.registered_model, result["model_version"])
        for tag, value in tags.items():
            client.set_model_version_tag(tracking.registered_model, found.version, tag, value)
        client.set_tag(found.run_id, TAG_INTERVAL, tags[TAG_INTERVAL])
        resolved = registry.resolve(tracking, client.get_model_version(tracking.registered_model, found.version),
                                    out / "downloaded")
        return resolved | {"interval": tags[TAG_INTERVAL]}

    return _once(out, fp, body)
