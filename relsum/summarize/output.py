"""The job's on-disk output: its columns, the manifest and index readers, the lock and temp cleanup.

Split out of :mod:`relsum.summarize.job` (which re-exports :func:`load_summaries` and the column lists);
the layout these helpers read and write is described in that module's docstring.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from relsum.data.io import write_csv_atomic, write_parquet_atomic

logger = logging.getLogger(__name__)

OUTPUT_COLUMNS = ["product_id", "summary", "summary_status", "content_key", "model_version", "run_id", "generated_at"]
INDEX_COLUMNS = ["product_id", "content_key", "run_id", "shard"]


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _read_manifest(out: Path) -> dict[str, Any] | None:
    path = out / "manifest.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def load_summaries(out_dir: str | Path) -> pd.DataFrame:
    """The committed output: one row per product (OUTPUT_COLUMNS), read through the last run's index."""
    out = Path(out_dir)
    manifest = _read_manifest(out)
    if manifest is None:
        raise FileNotFoundError(f"{out}: no manifest.json (no run has completed here)")
    index = pd.read_parquet(out / manifest["index"])
    parts = []
    for shard, rows in index.groupby("shard", sort=True):
        df = pd.read_parquet(out / shard)
        parts.append(df.merge(rows[["product_id", "run_id"]], on=["product_id", "run_id"]))
    result = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=OUTPUT_COLUMNS)
    return result[OUTPUT_COLUMNS].sort_values("product_id", ignore_index=True)


def _lock(out: Path) -> Any:
    handle = open(out / ".lock", "w")  # noqa: SIM115 - held for the job's lifetime, released by the kernel on exit
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.close()
        raise RuntimeError(f"{out}: another summarize job holds the lock") from exc
    return handle


def _clean_temps(out: Path) -> None:
    """Remove temp files left by a killed writer (``atomic_path`` names them ``.<name>.<random>.tmp``)."""
    for tmp in out.rglob(".*.tmp"):
        logger.info("removing partial file %s from an interrupted run", tmp)
        tmp.unlink(missing_ok=True)


def _publish(out: Path, run_dir: Path) -> None:
    """Copy the run's index and rejects to the top level (after the manifest commit; redone on rerun)."""
    write_parquet_atomic(pd.read_parquet(run_dir / "index.parquet"), out / "index.parquet")
    write_csv_atomic(pd.read_csv(run_dir / "rejects.csv", dtype=str, keep_default_na=False), out / "rejects.csv")
