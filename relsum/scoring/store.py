"""Persistent score store: r(q, doc) scores kept on disk per scorer fingerprint.

Why: at catalog scale the same (query, doc) pairs come back across stages (build pairs, reward,
evaluation) and across runs; a score computed once should never be computed again for the same model.

Layout: ``<root>/<fingerprint>/part-<ns>-<pid>-<rand>.parquet`` with columns ``query`` (string),
``text_hash`` (32-byte sha256 of the document string, see :func:`text_hash`) and ``score`` (float32).
The fingerprint folder *is* the key space: a new model, config or inference path has a new
fingerprint, so old scores are never served for it.

Crash safety without a manifest: a part is written under a temporary name (``.tmp-*``), fsynced and
then moved into place with ``os.replace`` (atomic on POSIX), and the folder is fsynced. Readers only
read ``part-*.parquet``, so they never see half-written data. One writer at a time: appends, compaction
and pruning hold an exclusive ``fcntl.flock`` on ``<fingerprint>/.lock``. Because only the lock holder
writes temporaries, any ``.tmp-*`` found while holding the lock is left over from a crashed writer and
is deleted then. Compaction writes the merged part before deleting the old ones, so a concurrent
reader sees each key at least once (duplicates carry the same score and are collapsed on load).

Damage (a truncated or garbled part, a wrong schema, a score outside [0, 1] or not finite) is never
served: a damaged part, or a damaged row, is treated as missing, logged once per reader, and its pairs
are rescored into a new part; compaction (``relsum scores prune``) drops it. The root carries a marker
file and pruning deletes only folders that are entries by their content (see
:mod:`relsum.scoring.store_layout`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from relsum.scoring.store_layout import BAD_ROW, read_part, scan, schema_problem, valid_scores, write_marker

logger = logging.getLogger(__name__)

PART_GLOB = "part-*.parquet"
TMP_PREFIX = ".tmp-"
LOCK_NAME = ".lock"
META_NAME = "scorer.json"  # which model and inference path wrote the scores, and why that path


def text_hash(doc: str) -> bytes:
    """sha256 of the document string (``join_title_text(title, text)``) as 32 raw bytes."""
    return hashlib.sha256(doc.encode("utf-8")).digest()


def default_root() -> Path:
    from relsum.core.paths import home

    return home() / "scores"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive_lock(folder: Path, timeout_s: float | None = None) -> Iterator[None]:
    """Hold ``folder/.lock`` exclusively (blocking; with ``timeout_s``, raise TimeoutError after it)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_NAME, "a+") as fh:
        if timeout_s is None:
            fcntl.flock(fh, fcntl.LOCK_EX)
        else:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{folder}: another writer holds the score-store lock") from None
                    time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _clean_temporaries(folder: Path) -> int:
    """Delete orphaned temporaries; call only while holding the folder's lock."""
    n = 0
    for tmp in folder.glob(TMP_PREFIX + "*"):
        tmp.unlink(missing_ok=True)
        n += 1
    if n:
        logger.warning("%s: removed %d temporary part(s) left by a crashed writer", folder, n)
    return n


def write_part(folder: Path, queries: Sequence[str], hashes: Sequence[bytes], scores: np.ndarray) -> Path:
    """Write one committed part atomically (caller holds the lock): temp file, fsync, os.replace."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"query": pa.array(list(queries), pa.string()),
                      "text_hash": pa.array(list(hashes), pa.binary(32)),
                      "score": pa.array(np.asarray(scores, dtype=np.float32), pa.float32())})
    name = f"part-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"
    tmp = folder / f"{TMP_PREFIX}{name}"
    with open(tmp, "wb") as fh:
        pq.write_table(table, fh, compression="zstd")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, folder / name)
    _fsync_dir(folder)
    return folder / name


class ScoreStore:
    """The scores of one fingerprint: ``lookup`` misses/hits and batched ``append`` (one part per call).

    Committed parts are loaded once into a dict keyed by (query, text hash); later lookups only read
    parts that appeared since (another process may have appended). ~1e6 keys take ~150 MB of RAM.
    """

    def __init__(self, fingerprint: str, root: str | Path | None = None) -> None:
        if not fingerprint or "/" in fingerprint or fingerprint.startswith("."):
            raise ValueError(f"bad fingerprint {fingerprint!r}")
        self.root = Path(root) if root else default_root()
        self.fingerprint = fingerprint
        self.folder = self.root / fingerprint
        self._scores: dict[tuple[str, bytes], float] = {}
        self._loaded: set[str] = set()
        self.damaged: dict[str, str] = {}  # part name -> why its (bad) rows are treated as missing
        self.hits = self.misses = 0

    def __len__(self) -> int:
        self.refresh()
        return len(self._scores)

    def refresh(self) -> None:
        """Load committed parts not read yet (a part deleted by a concurrent compaction is skipped).

        Damaged parts and rows are left out (so their pairs are rescored) and logged once.
        """
        if not self.folder.is_dir():
            return
        for part in sorted(self.folder.glob(PART_GLOB)):
            if part.name in self._loaded or not part.is_file():
                continue
            try:
                rows = read_part(part)
            except FileNotFoundError:  # compacted away meanwhile; its rows are in the merged part
                continue
            self._loaded.add(part.name)
            if rows.problem or rows.bad_rows:
                why = rows.problem or f"{rows.bad_rows} bad row(s): {BAD_ROW}"
                self.damaged[part.name] = why
                logger.warning("score store %s: damaged part %s (%s): its rows are treated as missing and "
                               "rescored; `relsum scores prune` drops them", self.folder, part.name, why)
            self._scores.update(zip(zip(rows.queries, rows.hashes, strict=True), rows.scores.tolist(),
                                    strict=True))

    def lookup(self, queries: Sequence[str], hashes: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """(scores, found) aligned with the inputs; ``scores`` is NaN where ``found`` is False."""
        self.refresh()
        out = np.full(len(queries), np.nan, dtype=np.float32)
        get = self._scores.get
        for i, key in enumerate(zip(queries, hashes, strict=True)):
            value = get(key)
            if value is not None:
                out[i] = value
        found = ~np.isnan(out)
        self.hits += int(found.sum())
        self.misses += int(len(found) - found.sum())
        return out, found

    def append(self, queries: Sequence[str], hashes: Sequence[bytes], scores: np.ndarray) -> Path | None:
        """Commit the rows as one new part (under the writer lock); returns its path, None if no rows."""
        if len(queries) == 0:
            return None
        if not len(queries) == len(hashes) == len(scores):
            raise ValueError("queries/hashes/scores lengths differ")
        ok = valid_scores(scores)
        if not ok.all():  # stored, they would be served as damaged forever; not storing means rescoring
            logger.warning("score store %s: not storing %d score(s) outside [0, 1] or not finite",
                           self.folder, int((~ok).sum()))
            keep = np.flatnonzero(ok)
            queries, hashes = [queries[i] for i in keep], [hashes[i] for i in keep]
            scores = np.asarray(scores)[keep]
            if not len(keep):
                return None
        with exclusive_lock(self.folder):
            write_marker(self.root)
            _clean_temporaries(self.folder)
            part = write_part(self.folder, queries, hashes, scores)
        self._scores.update(zip(zip(queries, hashes, strict=True), np.asarray(scores, np.float32).tolist(),
                                strict=True))
        self._loaded.add(part.name)
        return part


def write_meta(folder: Path, meta: dict) -> None:
    """Record (atomically) which model and path write this fingerprint; kept if unchanged."""
    import json

    from relsum.data.io import write_json_atomic

    folder.mkdir(parents=True, exist_ok=True)
    write_marker(folder.parent)
    if read_meta(folder) != json.loads(json.dumps(meta, default=str)):
        write_json_atomic(meta, folder / META_NAME)


def read_meta(folder: Path) -> dict | None:
    import json

    try:
        return json.loads((folder / META_NAME).read_text())
    except (OSError, ValueError):
        return None


def _meta_from_gates(folder: Path) -> dict:
    """A folder without scores but with gate results still says which path it belongs to."""
    import json

    for gate in sorted(folder.glob("gate-*.json")):
        try:
            data = json.loads(gate.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        verdict = "passed" if data.get("passed") else "refused"
        return {"path": data.get("path", "?"), "reason": f"gate results only ({verdict})"}
    return {}


def fingerprint_stats(folder: Path) -> dict:
    """rows, parts, bytes, last write (epoch seconds) and unreadable parts of one fingerprint folder.

    Reads only each part's footer (cheap): a part whose footer cannot be read or whose schema is not the
    store's counts as ``damaged`` (its rows are not counted); damaged rows are found only on loading.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = sorted(folder.glob(PART_GLOB))
    rows = size = damaged = 0
    last = 0.0
    for part in parts:
        with contextlib.suppress(FileNotFoundError):
            st = part.stat()
            size += st.st_size
            last = max(last, st.st_mtime)
            try:
                meta = pq.ParquetFile(part)
                problem = schema_problem(meta.schema_arrow)
            except (FileNotFoundError, PermissionError):
                raise
            except (pa.ArrowException, OSError, ValueError) as exc:
                problem = str(exc)
            if problem:
                damaged += 1
                logger.warning("score store %s: damaged part %s (%s)", folder, part.name, problem)
            else:
                rows += meta.metadata.num_rows
    meta = read_meta(folder) or _meta_from_gates(folder)
    return {"fingerprint": folder.name, "rows": rows, "parts": len(parts), "damaged": damaged, "bytes": size,
            "last_write": last or None, "gates": sorted(p.name for p in folder.glob("gate-*.json")),
            "path": meta.get("path", "?"), "path_reason": meta.get("reason", ""),
            "model_dir": meta.get("model_dir")}


def list_fingerprints(root: str | Path | None = None) -> list[Path]:
    """The fingerprint folders under ``root`` that are store entries by their content (see store_layout)."""
    base = Path(root) if root else default_root()
    if not base.is_dir():
        return []
    return scan(base)[0]


def compact(folder: Path) -> dict:
    """Merge a fingerprint's parts into one (deduplicated) part, leaving out damaged parts and rows.

    Returns parts before/after, rows, and (when there were any) the damaged parts and rows dropped.
    """
    import pandas as pd

    with exclusive_lock(folder):
        _clean_temporaries(folder)
        parts = [p for p in sorted(folder.glob(PART_GLOB)) if p.is_file()]
        read = {p: read_part(p) for p in parts}  # we hold the lock: no part appears or vanishes now
        damaged = {p.name: r.problem for p, r in read.items() if r.problem}
        bad_rows = sum(r.bad_rows for r in read.values())
        if len(parts) <= 1 and not damaged and not bad_rows:
            return {"parts_before": len(parts), "parts_after": len(parts)}
        frame = pd.DataFrame({"query": [q for r in read.values() for q in r.queries],
                              "text_hash": [h for r in read.values() for h in r.hashes],
                              "score": np.concatenate([r.scores for r in read.values()] or [np.empty(0)])})
        frame = frame.drop_duplicates(["query", "text_hash"], keep="last")
        if len(frame):
            write_part(folder, frame["query"].tolist(), frame["text_hash"].tolist(),
                       frame["score"].to_numpy())
        for part in parts:
            part.unlink()
        _fsync_dir(folder)
    out = {"parts_before": len(parts), "parts_after": int(len(frame) > 0), "rows": int(len(frame))}
    if damaged or bad_rows:
        logger.warning("score store %s: compaction dropped %d damaged part(s) %s and %d damaged row(s)",
                       folder, len(damaged), sorted(damaged), bad_rows)
        out.update(damaged_parts=sorted(damaged), damaged_rows=bad_rows)
    return out


def remove_fingerprint(folder: Path) -> None:
    """Delete a fingerprint folder: rename it aside under the lock (atomic), then delete the copy."""
    with exclusive_lock(folder):
        trash = folder.parent / f".trash-{folder.name}-{uuid.uuid4().hex[:8]}"
        os.replace(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)


def iter_older_than(folders: Iterable[Path], days: float) -> Iterator[Path]:
    cutoff = time.time() - days * 86400
    for folder in folders:
        last = fingerprint_stats(folder)["last_write"] or folder.stat().st_mtime
        if last < cutoff:
            yield folder
