"""What every DAG step shares: loading the DAG config (:class:`relsum.pipelines.configs.DagConfig`),
interval keys, run-once commits and the one scorer.

:func:`run_once` is the idempotence of every step: outputs are committed with ``_SUCCESS.json`` and a
:func:`fingerprint` of the step's inputs, so a retry with the same inputs returns the committed outputs.
The steps themselves live in :mod:`relsum.pipelines.retrain` (the import path the DAGs use),
:mod:`relsum.pipelines.retrain_evaluate` and :mod:`relsum.pipelines.champion_steps`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from relsum.core.config import load_config
from relsum.pipelines.configs import DagConfig
from relsum.scoring.protocol import RelevanceScorer

logger = logging.getLogger(__name__)

RETRAIN, CATALOG, EXPORT = "relsum_retrain", "relsum_catalog_summaries", "relsum_interleaving_export"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def load(config_path: str | None = None, overrides: list[str] | None = None) -> DagConfig:
    return load_config(DagConfig, config_path or None, list(overrides or []))


def interval_key(start: Any = None, run_id: str | None = None) -> str:
    """``YYYY-MM-DD`` of the interval start (full timestamp when not midnight); else the run id."""
    if start is not None:
        text = start.isoformat()
        return text[:10] if text[11:19] in ("", "00:00:00") else _UNSAFE.sub("-", text[:19])
    if not run_id:
        raise ValueError("an interval key needs a data-interval start or a run id")
    return _UNSAFE.sub("_", run_id).strip("._")


def task_setup(context: dict) -> tuple[DagConfig, str, str | None, str | None]:
    """(config, interval key, start date, end date as ``YYYY-MM-DD``) of a running Airflow task.

    The config comes from the run's ``config`` param, else the Variable ``relsum_config``, else the
    defaults, with the ``overrides`` param on top; every DAG task starts here. A run without a data
    interval (a manual trigger) is keyed by its logical date, else by its run id.
    """
    from airflow.sdk import Variable

    params = context["params"]
    config = load(params.get("config") or Variable.get("relsum_config", default=None),
                  params.get("overrides"))
    start = context.get("data_interval_start") or context.get("logical_date")
    end = context.get("data_interval_end")
    return (config, interval_key(start, context["run_id"]), start.date().isoformat() if start else None,
            end.date().isoformat() if end else None)


def fingerprint(*parts: Any) -> str:
    """16 hex digits of the SHA-256 of ``parts`` as sorted JSON: a step's inputs, compared on every retry."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_sha(path: str | Path) -> str:
    """16 hex digits of a file's SHA-256: inputs enter a fingerprint by content, not by path or mtime."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def run_once(out: Path, digest: str, body: Callable[[], dict]) -> dict:
    """Return the committed outputs of ``out`` for ``digest`` (see :func:`fingerprint`), else run ``body``
    and commit them."""
    from relsum.data.io import write_json_atomic

    marker = out / "_SUCCESS.json"
    if marker.is_file():
        done = json.loads(marker.read_text())
        if done["fingerprint"] == digest:
            logger.info("%s: already done for these inputs, reusing", out)
            return done["outputs"]
        logger.info("%s: inputs changed (%s -> %s), recomputing", out, done["fingerprint"], digest)
        marker.unlink()
    out.mkdir(parents=True, exist_ok=True)
    outputs = body()
    write_json_atomic({"fingerprint": digest, "outputs": outputs}, marker)
    return outputs


def validate_inputs(config: DagConfig, dag_id: str, key: str) -> dict:
    """Strict ``validate`` of a DAG's input tables (retrain: catalog + search log; catalog summaries: the
    catalog) into ``<runs>/<dag>/<key>/validate``; an empty table or one over ``validate.max_reject_rate``
    raises :class:`relsum.pipelines.validate.ValidationFailed` and fails the task before any work."""
    from relsum.pipelines.configs import ValidateConfig
    from relsum.pipelines.validate import run

    tables = ({"catalog": config.summarize.catalog} if dag_id == CATALOG else
              {"catalog": config.pairs.catalog, "search_log": config.pairs.search_log})
    out = config.step_dir(dag_id, key, "validate")
    check = ValidateConfig(**tables, out_dir=str(out), strict=True,
                           max_reject_rate=config.validate.max_reject_rate)

    def body() -> dict:
        summary = run(check)
        return {"validation": str(out / "validation.json"),
                "valid_rows": {t: s["valid"] for t, s in summary["tables"].items()}}

    shas = {t: file_sha(v) if Path(v).is_file() else v for t, v in tables.items()}
    return run_once(out, fingerprint(shas, config.validate.max_reject_rate), body)


def reward_model_dir(config: DagConfig) -> str:
    """The frozen cross-encoder folder of the DAGs (bootstrapped once into RELSUM_HOME when unset)."""
    from relsum.pipelines.reward_model import ensure_reward_model

    return ensure_reward_model(config.reward_model)


def dag_scorer(config: DagConfig) -> RelevanceScorer:
    """The one scorer of a DAG task, built from ``config.scorer`` (score store on by default, so retries and
    later steps reuse scores; the train step reads the same section through ``train.scorer``)."""
    from relsum.scoring.factory import make_scorer

    return make_scorer(reward_model_dir(config), config.scorer)


def catalog_subset(source: str, products: set[str], dst: Path) -> str:
    """The catalog rows of ``products``: raw JSONL lines copied as they are (nested attributes stay
    intact)."""
    from relsum.data.io import atomic_path, read_table, write_parquet_atomic

    if source.endswith(".jsonl"):
        dst = dst.with_suffix(".jsonl")
        with Path(source).open(encoding="utf-8") as fh, atomic_path(dst) as tmp:
            tmp.write_text("".join(line for line in fh if line.strip()
                                   and str(json.loads(line).get("product_id")) in products), encoding="utf-8")
    else:
        dst = dst.with_suffix(".parquet")
        frame = read_table(source)
        write_parquet_atomic(frame[frame["product_id"].astype(str).isin(products)].reset_index(drop=True),
                             dst)
    return str(dst)
