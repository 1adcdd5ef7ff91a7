"""Distributed labelling: r(q,t), r(q,[t;d]), gap and label for Parquet parts, with Ray Data.

Why Ray Data: at catalog scale the labelling step is pure scorer time, and it parallelises over
pairs. ``read_parquet -> map_batches(actor pool) -> one output part per input part``: each actor loads
the Scorer once (so the model load and the in-memory cache are per actor, not per batch), the local
Ray runtime is used by default, and ``address`` points at a cluster.

Exactly once and resumable: input part ``<stem>.parquet`` gives output part ``<out_dir>/<stem>.parquet``,
written atomically when all of its rows have come back (row counts are checked against the input's
Parquet metadata, so a part with missing or duplicated rows is an error, never written). A rerun skips
input parts whose output part exists, so a crash costs at most the parts in flight. Row order within
an output part is not guaranteed (labelling is per row, so nothing depends on it).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from pathlib import Path

import pandas as pd

from relsum.scoring.config import RayLabelConfig, ScorerConfig

logger = logging.getLogger(__name__)

REQUIRED = ("query", "title", "text")
_PATH_COL = "path"


class LabelActor:
    """Ray actor: loads the Scorer once, labels pandas batches with relsum.pairs.filter.label_and_gap."""

    def __init__(self, model_dir: str, scorer_config: dict) -> None:
        from relsum.scoring.factory import make_scorer

        self.scorer = make_scorer(model_dir, ScorerConfig(**scorer_config))

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        from relsum.pairs.filter import label_and_gap

        queries, titles = batch["query"].tolist(), batch["title"].tolist()
        r_title = self.scorer.score(queries, titles)
        r_desc = self.scorer.score(queries, titles, batch["text"].tolist())
        return label_and_gap(batch, r_title, r_desc)


def input_parts(source: str | Path) -> list[Path]:
    path = Path(source)
    if path.is_file() and path.suffix == ".parquet":
        return [path.resolve()]
    parts = sorted(p.resolve() for p in path.glob("*.parquet")) if path.is_dir() else []
    if not parts:
        raise FileNotFoundError(f"{source}: no Parquet input (a .parquet file or a "
                                f"folder of *.parquet parts)")
    return parts


def _check_schema(parts: list[Path]) -> dict[str, int]:
    """Rows per part from the Parquet metadata; refuses parts without the required columns."""
    import pyarrow.parquet as pq

    rows = {}
    for part in parts:
        meta = pq.ParquetFile(part)
        names = set(meta.schema_arrow.names)
        missing = set(REQUIRED) - names
        if missing:
            raise ValueError(f"{part}: missing columns {sorted(missing)}")
        if _PATH_COL in names:
            raise ValueError(f"{part}: column {_PATH_COL!r} is reserved for the input part name")
        rows[part.name] = meta.metadata.num_rows
    if len(rows) != len(parts):
        raise ValueError("input part names must be unique")
    return rows


def _init_ray(config: RayLabelConfig) -> bool:
    """Connect to (or start) Ray; returns True when this call started it (and should shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    env = {"env_vars": {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                        "TOKENIZERS_PARALLELISM": "false"}}
    if config.address:
        ray.init(address=config.address, runtime_env=env, log_to_driver=False)
    else:
        ray.init(num_cpus=config.local_num_cpus, include_dashboard=False, runtime_env=env,
                 log_to_driver=False)
    return True


def run(config: RayLabelConfig) -> dict:
    """Label every pending input part; returns counts of parts done, skipped and rows written."""
    import math

    import ray

    from relsum.data.io import write_json_atomic, write_parquet_atomic
    from relsum.pairs.filter import label_and_gap

    if not config.reward_model:
        raise ValueError("ray labelling needs reward_model (a local cross-encoder folder)")
    parts = input_parts(config.input)
    expected = _check_schema(parts)
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pending = [p for p in parts if not (out / p.name).is_file()]
    logger.info("%d input parts, %d "
                "already labelled, %d to do", len(parts), len(parts) - len(pending), len(pending))
    written = rows = 0
    for part in [p for p in pending if expected[p.name] == 0]:  # nothing to score; keep the schema
        empty = pd.read_parquet(part)
        write_parquet_atomic(label_and_gap(empty, empty.index.to_numpy(float), empty.index.to_numpy(float)),
                             out / part.name)
        written += 1
    pending = [p for p in pending if expected[p.name] > 0]
    if pending:
        started = _init_ray(config)
        try:
            scorer_cfg = dataclasses.asdict(config.scorer) | {
                "num_threads": config.scorer.num_threads or max(1, math.ceil(config.cpus_per_actor)),
                "show_progress": False}
            ds = ray.data.read_parquet([str(p) for p in pending], include_paths=True)
            ds = ds.map_batches(LabelActor, batch_size=config.batch_size, batch_format="pandas",
                                fn_constructor_kwargs={"model_dir": str(Path(config.reward_model).resolve()),
                                                       "scorer_config": scorer_cfg},
                                compute=ray.data.ActorPoolStrategy(size=config.num_actors),
                                num_cpus=config.cpus_per_actor)
            buffers: dict[str, list[pd.DataFrame]] = defaultdict(list)
            counts: dict[str, int] = defaultdict(int)
            for batch in ds.iter_batches(batch_size=None, batch_format="pandas"):
                for src, group in batch.groupby(_PATH_COL, sort=False):
                    name = Path(str(src)).name
                    buffers[name].append(group.drop(columns=_PATH_COL))
                    counts[name] += len(group)
                    if counts[name] > expected[name]:
                        raise RuntimeError(f"{name}: {counts[name]} labelled rows "
                                           f"for {expected[name]} input rows")
                    if counts[name] == expected[name]:
                        frame = pd.concat(buffers.pop(name), ignore_index=True)
                        write_parquet_atomic(frame, out / name)
                        written += 1
                        rows += len(frame)
            short = {p.name: (counts[p.name], expected[p.name]) for p in pending
                     if counts[p.name] != expected[p.name]}
            if short:
                raise RuntimeError(f"parts not fully labelled (got, expected): {short}")
        finally:
            if started:
                ray.shutdown()
    summary = {"parts": len(parts), "labelled_now": written, "skipped": len(parts) - written,
               "rows_labelled_now": rows, "out_dir": str(out)}
    write_json_atomic(summary, out / "_label_summary.json")
    return summary
