"""What counts as a score store and as one of its entries, so that pruning never deletes anything else.

Why: ``relsum scores prune`` deletes folders. Pointed at the wrong folder (a ``RELSUM_HOME``, a project
folder) it must refuse, and inside a store it must leave alone anything the store did not write. So a
root is a store only if it carries the marker file :data:`MARKER_NAME` (written by every store writer)
or, for stores written before the marker existed, holds at least one folder that is an entry; and a
folder is an entry only if every file in it has one of the store's own names (parts, temporaries,
lock, ``scorer.json``, gate results) and it holds no subfolder and no link. The root's marker is never
enough on its own to delete a folder: each entry is checked by its content.

It also says what a usable part is (:func:`read_part`): readable Parquet with the store's schema; rows
whose score is outside the documented [0, 1] or not finite are damage, never served.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from relsum.core.errors import InputError

logger = logging.getLogger(__name__)

MARKER_NAME = ".relsum-score-store.json"
MARKER_FORMAT = "relsum-score-store"

_PART = r"part-\d{20}-\d+-[0-9a-f]{8}\.parquet"
_GATE = r"gate-[0-9a-f]{16}\.json"
#: Files that mark a folder as an entry (at least one must be present).
_CONTENT_RE = re.compile(rf"{_PART}|\.tmp-part-.+\.parquet|scorer\.json|{_GATE}")
#: Every file the store writes into an entry (atomic JSON writes leave ``.<name>.<rand>.tmp`` on a crash).
_OWN_RE = re.compile(rf"{_CONTENT_RE.pattern}|\.lock|\.(scorer\.json|{_GATE})\..+\.tmp")
BAD_ROW = "score outside [0, 1] or not finite, missing query, or hash not 32 bytes"


def has_marker(root: Path) -> bool:
    return (Path(root) / MARKER_NAME).is_file()


def write_marker(root: Path) -> None:
    """Mark ``root`` as a score store (once; atomic, so concurrent writers may race harmlessly)."""
    from relsum.data.io import write_json_atomic

    if not has_marker(root):
        write_json_atomic({"format": MARKER_FORMAT, "version": 1,
                           "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")},
                          Path(root) / MARKER_NAME)


def entry_problem(folder: Path, marked: bool = False) -> str | None:
    """Why ``folder`` is not a score-store entry, or None if it is one.

    In a ``marked`` root, a folder left with only the lock (all its parts damaged and compacted away) is
    still an entry; otherwise a part, ``scorer.json`` or a gate result must be there.
    """
    if folder.name.startswith("."):
        return "hidden folder"
    if folder.is_symlink() or not folder.is_dir():
        return "not a plain folder"
    names, content = [], False
    for child in folder.iterdir():
        if child.is_symlink() or not child.is_file():
            return f"holds {child.name!r}, which is not a plain file"
        if not _OWN_RE.fullmatch(child.name):
            return f"holds {child.name!r}, which the score store does not write"
        content = content or bool(_CONTENT_RE.fullmatch(child.name))
        names.append(child.name)
    if not content and not (marked and names):
        return "holds no score-store parts, scorer.json or gate results" if names else "empty"
    return None


def scan(root: Path) -> tuple[list[Path], dict[str, str]]:
    """(entries, {name: why not an entry}) among the visible children of ``root`` (hidden ones skipped)."""
    entries, foreign, marked = [], {}, has_marker(root)
    for child in sorted(Path(root).iterdir()):
        if child.name.startswith("."):
            continue
        problem = entry_problem(child, marked)
        if problem is None:
            entries.append(child)
        else:
            foreign[child.name] = problem
    return entries, foreign


def checked_entries(root: Path, action: str) -> tuple[list[Path], dict[str, str]]:
    """The entries of the store at ``root`` and what else is there; refuse a folder that is not a store.

    A missing root is an empty store. An existing one must carry the marker or hold an entry written
    by an older relsum (recognised by its files' names); otherwise :class:`InputError`, touching nothing.
    """
    root = Path(root)
    if not root.exists():
        return [], {}
    if not root.is_dir():
        raise InputError(f"{root}: not a folder, so not a score store; {action} refused")
    entries, foreign = scan(root)
    if not has_marker(root) and not entries and foreign:
        sample = ", ".join(sorted(foreign)[:3])
        raise InputError(f"{root} is not a score store (no {MARKER_NAME} and no fingerprint folder of "
                         f"score parts; it holds {sample}{', ...' if len(foreign) > 3 else ''}); "
                         f"{action} refused, nothing touched")
    for name, why in sorted(foreign.items()):
        logger.warning("%s: %s is not a score-store entry (%s); left alone", root, name, why)
    return entries, foreign


class PartRows(NamedTuple):
    """The usable rows of one part; ``problem`` says why the whole part is damaged, ``bad_rows`` how many
    rows were dropped (score outside [0, 1] or not finite, missing query, hash not 32 bytes)."""

    queries: list
    hashes: list
    scores: np.ndarray
    bad_rows: int = 0
    problem: str | None = None


def schema_problem(schema) -> str | None:
    import pyarrow as pa

    checks = {"query": (pa.types.is_string, pa.types.is_large_string),
              "text_hash": (pa.types.is_binary, pa.types.is_fixed_size_binary, pa.types.is_large_binary),
              "score": (pa.types.is_floating,)}
    for name, tests in checks.items():
        if name not in schema.names:
            return f"no {name!r} column"
        if not any(test(schema.field(name).type) for test in tests):
            return f"column {name!r} has type {schema.field(name).type}"
    return None


def read_part(part: Path) -> PartRows:
    """The valid rows of ``part``; a part that cannot be read comes back empty with its ``problem``.

    ``FileNotFoundError`` (compacted away meanwhile) and ``PermissionError`` (the environment, not
    damage) propagate.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    empty = np.empty(0, np.float32)
    try:
        table = pq.read_table(part)
        problem = schema_problem(table.schema)
        if problem:
            return PartRows([], [], empty, problem=problem)
        queries, hashes = table["query"].to_pylist(), table["text_hash"].to_pylist()
        scores = table["score"].to_numpy(zero_copy_only=False).astype(np.float64)
    except (FileNotFoundError, PermissionError):
        raise
    except (pa.ArrowException, OSError, ValueError, TypeError) as exc:
        return PartRows([], [], empty, problem=f"unreadable: {type(exc).__name__}: "
                                               f"{str(exc).splitlines()[0][:200] if str(exc) else ''}")
    ok = valid_scores(scores)
    ok &= np.fromiter((isinstance(q, str) and isinstance(h, bytes) and len(h) == 32
                       for q, h in zip(queries, hashes, strict=True)), bool, len(queries))
    if ok.all():
        return PartRows(queries, hashes, scores.astype(np.float32))
    keep = np.flatnonzero(ok)
    return PartRows([queries[i] for i in keep], [hashes[i] for i in keep], scores[keep].astype(np.float32),
                    bad_rows=int(len(ok) - len(keep)))


def valid_scores(scores: np.ndarray) -> np.ndarray:
    """Which scores are finite and in [0, 1] (the scorer's documented range)."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.isfinite(scores) & (scores >= 0.0) & (scores <= 1.0)
