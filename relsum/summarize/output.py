"""The job's on-disk output: its columns, the manifest and index readers, checksums, the lock, temp cleanup.

Everything that touches the committed files lives here, apart from the decisions of
:mod:`relsum.summarize.job` (which re-exports :func:`read_job_output` and the column lists); the layout
these helpers read and write is described in that module's docstring.

Every shard is recorded with its size and SHA-256 when it is written (``shard-NNNNN.done.json``) and
every file the committed index points at is recorded in the manifest (``files``). A rerun verifies
them and regenerates what is missing or damaged; :func:`read_job_output` refuses damaged output with an
error that names the file and the command that repairs it, instead of a pyarrow ``ArrowInvalid``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

import pandas as pd

from relsum.core.errors import EnvironmentProblem
from relsum.data.atomic_dir import hold_lock
from relsum.data.io import write_csv_atomic, write_parquet_atomic

logger = logging.getLogger(__name__)

OUTPUT_COLUMNS = ["product_id", "summary", "summary_status", "content_key", "model_version", "run_id",
                  "generated_at"]
INDEX_COLUMNS = ["product_id", "content_key", "run_id", "shard"]
#: The config of the last committed run, written beside the manifest; ``relsum summarize --config`` on it
#: repairs.
CONFIG_FILE = "summarize.yaml"
#: Test hook (see :func:`fault_point`).
FAULT_ENV = "RELSUM_FAULT_AT"

_fault_calls: dict[str, int] = {}


class DamagedOutputError(EnvironmentProblem):
    """A committed output file that is missing, truncated or changed since the job wrote it."""


class NoCommittedRun(EnvironmentProblem, FileNotFoundError):
    """An output folder without ``manifest.json``: no run has completed there."""


def fault_point(phase: str) -> None:
    """Test hook: with ``RELSUM_FAULT_AT=<phase>:<n>`` the n-th call of ``fault_point(phase)`` SIGKILLs us.

    The job calls it between its writes (phases ``plan``, ``shard`` and ``commit``) so the fault test
    can kill ``relsum summarize`` at a chosen point, as an OOM kill or a lost node would. Unset (always,
    outside tests) it does nothing.
    """
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    want, _, n = spec.partition(":")
    if want != phase:
        return
    _fault_calls[phase] = _fault_calls.get(phase, 0) + 1
    if _fault_calls[phase] == int(n or 1):
        logger.warning("%s=%s: killing this process (test hook)", FAULT_ENV, spec)
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)


def sha(obj: Any) -> str:
    """SHA-256 of ``obj`` as sorted-key JSON (content keys, run ids, catalog digests)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def file_record(path: Path) -> dict[str, Any]:
    """``{"bytes": size, "sha256": digest}`` of a file, as stored in shard records and the manifest."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": h.hexdigest()}


def file_problem(path: Path, record: dict[str, Any] | None) -> str | None:
    """Why ``path`` does not match its ``record`` (missing, other size, other checksum), or None if it does.

    Without a record (output of an older version) the file only has to exist and read as Parquet/CSV.
    """
    if not path.is_file():
        return "missing"
    if record is None:
        try:
            pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, nrows=1)
        except Exception as exc:  # noqa: BLE001 - any read failure means the file is damaged
            return f"unreadable ({type(exc).__name__})"
        return None
    size = path.stat().st_size
    if size != record["bytes"]:
        return f"{size} bytes, {record['bytes']} when written (truncated or overwritten)"
    if file_record(path)["sha256"] != record["sha256"]:
        return "checksum differs from the one recorded when it was written"
    return None


def read_manifest(out: Path) -> dict[str, Any] | None:
    """The committed manifest of ``out``; None if there is none. A damaged one raises DamagedOutputError."""
    path = out / "manifest.json"
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        manifest["run_id"], manifest["index"]  # noqa: B018 - the keys every reader needs
    except (ValueError, KeyError, TypeError) as exc:
        raise DamagedOutputError(f"{path} is damaged "
                                 f"({type(exc).__name__}: {exc}); {repair_hint(out)}") from exc
    return manifest


def repair_hint(out: Path) -> str:
    """The command that regenerates a damaged output folder (its last run's config, when it has one)."""
    config = out / CONFIG_FILE
    if config.is_file():
        return f"rerun `relsum summarize --config {config}` to regenerate it"
    return f"rerun `relsum summarize --out {out}` with the same catalog and model to regenerate it"


def damaged_files(out: Path, manifest: dict[str, Any]) -> dict[str, str]:
    """Committed files of ``manifest`` that are missing or damaged: ``{path relative to out: problem}``.

    Checks the index and rejects first (without the index the shards are unknown), then every shard the
    index points at, against the sizes and checksums recorded in the manifest.
    """
    records = manifest.get("files") or {}
    for name in (manifest["index"], manifest.get("rejects")):
        problem = file_problem(out / name, records.get(name)) if name else None
        if problem:
            return {name: problem}
    shards = pd.read_parquet(out / manifest["index"], columns=["shard"])["shard"].unique()
    found = {s: file_problem(out / s, records.get(s)) for s in sorted(shards)}
    return {s: p for s, p in found.items() if p}


def read_job_output(out_dir: str | Path) -> pd.DataFrame:
    """The committed output: one row per product (OUTPUT_COLUMNS), read through the last run's index.

    Every file is checked against the size and checksum recorded when it was written; a missing or
    damaged one raises :class:`DamagedOutputError` naming it and the command that regenerates it.
    """
    out = Path(out_dir)
    manifest = read_manifest(out)
    if manifest is None:
        raise NoCommittedRun(f"{out}: no manifest.json (no summarize run has completed here)")
    damaged = damaged_files(out, manifest)
    if damaged:
        listed = "; ".join(f"{out / name}: {problem}" for name, problem in list(damaged.items())[:3])
        more = f" and {len(damaged) - 3} more" if len(damaged) > 3 else ""
        raise DamagedOutputError(f"damaged summaries output: {listed}{more}; {repair_hint(out)}")
    index = pd.read_parquet(out / manifest["index"])
    parts = []
    for shard, rows in index.groupby("shard", sort=True):
        df = pd.read_parquet(out / shard)
        parts.append(df.merge(rows[["product_id", "run_id"]], on=["product_id", "run_id"]))
    result = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=OUTPUT_COLUMNS)
    return result[OUTPUT_COLUMNS].sort_values("product_id", ignore_index=True)


def shard_paths(run_dir: Path, shard_no: int) -> tuple[Path, Path, Path]:
    """(outputs, generation rejects, record) of one shard; the record is written last and marks it done."""
    stem = run_dir / f"shard-{shard_no:05d}"
    return stem.with_suffix(".parquet"), Path(f"{stem}.rejects.parquet"), Path(f"{stem}.done.json")


def record_shard(run_dir: Path, shard_no: int) -> None:
    """Write the shard's record: size and SHA-256 of its two files (after both are in place)."""
    from relsum.data.io import write_json_atomic

    shard, rejects, record = shard_paths(run_dir, shard_no)
    write_json_atomic({"shard": file_record(shard), "rejects": file_record(rejects)}, record)


def shard_problem(run_dir: Path, shard_no: int, planned: set[str]) -> str | None:
    """None when the shard is committed and intact; otherwise why it must be (re)generated.

    ``"not written"`` is the normal case of a shard not reached yet. A shard whose files are there but
    whose record is not (killed between the two writes, or written by an older version) is accepted
    when it reads whole and holds exactly the ``planned`` products, and is then recorded.
    """
    shard, rejects, record = shard_paths(run_dir, shard_no)
    if record.is_file():
        try:
            recorded = json.loads(record.read_text(encoding="utf-8"))
            checks = [(shard, recorded["shard"]), (rejects, recorded["rejects"])]
        except (ValueError, KeyError, TypeError):
            return f"its record {record.name} is damaged"
        for path, rec in checks:
            problem = file_problem(path, rec)
            if problem:
                return f"{path.name} is {problem}" if problem == "missing" else f"{path.name}: {problem}"
        return None
    if not shard.is_file():
        return "not written"
    try:
        ids = [*pd.read_parquet(shard, columns=["product_id"])["product_id"],
               *pd.read_parquet(rejects, columns=["product_id"])["product_id"]]
    except Exception as exc:  # noqa: BLE001 - unreadable means damaged
        return f"{shard.name} or its rejects is unreadable ({type(exc).__name__})"
    if len(ids) != len(planned) or set(ids) != planned:
        return f"{shard.name} holds other products than its plan"
    record_shard(run_dir, shard_no)
    return None


def lock(out: Path) -> Any:
    """Hold ``out/.lock`` for the job's lifetime (released by the kernel when the process ends, even
    killed): :func:`relsum.data.atomic_dir.hold_lock`, the lock ``relsum evaluate`` holds beside its
    folder. Inside ``out`` here, since the job writes into its folder rather than swapping it."""
    path = out / ".lock"
    return hold_lock(path, f"{out}: another summarize job holds the lock {path}; wait for it to finish (a "
                           "killed job releases it)", unwritable="the output folder must be writable")


def clean_temps(out: Path) -> None:
    """Remove temp files left by a killed writer (``atomic_path`` names them ``.<name>.<random>.tmp``)."""
    for tmp in out.rglob(".*.tmp"):
        logger.info("removing partial file %s from an interrupted run", tmp)
        tmp.unlink(missing_ok=True)


def publish(out: Path, run_dir: Path) -> None:
    """Copy the run's index and rejects to the top level (after the manifest commit; redone on rerun)."""
    write_parquet_atomic(pd.read_parquet(run_dir / "index.parquet"), out / "index.parquet")
    fault_point("commit")
    write_csv_atomic(pd.read_csv(run_dir / "rejects.csv", dtype=str, keep_default_na=False),
                     out / "rejects.csv")
