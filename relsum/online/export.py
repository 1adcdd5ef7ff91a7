"""Reading an interleaving export back for the analysis, refusing one that is not what was served.

Why refuse instead of analysing what is there: the analysis credits a click at position *k* to the
team of the item the export puts at *k*. An export that was edited or cut short (a team other than
``control``/``variation``, two items at one position, a position missing, an unreadable last row)
no longer says which team's item the user saw, so a click there can count as a win for either side
and the verdict is wrong without any sign of it. An export is written by ``relsum
export-interleaving`` in one go, so any such problem means the file is not the one that was served:
the stage stops with one line naming the file, the first problems and what to do.

Both forms the export stage writes are read: the flat ``interleaved.parquet`` (or a CSV/JSONL of the
same columns) and the nested ``interleaved.jsonl`` (one list per line, ``items`` holding position,
product and team), which is flattened first. The export is returned with ids as stripped strings and
positions as ``int64`` (a CSV export reads them as text, where ``"10"`` sorts before ``"2"``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd

from relsum.core.errors import InputError
from relsum.data import io as rio
from relsum.data.ids import as_id

logger = logging.getLogger(__name__)

TEAMS = ("control", "variation")
REQUIRED = ["experiment_id", "query_id", "query", "position", "product_id", "team"]
REPAIR = ("re-run `relsum export-interleaving` to write it again, or pass the unedited export the serving "
          "system used")
SHOWN = 3


class ExportError(InputError):
    """An interleaving export that cannot be read or does not describe the lists that were served."""


def _position(value: Any) -> int | None:
    """A 1-based position, or None when missing or not a whole number >= 1."""
    key = as_id(value)
    try:
        number = float(key) if key is not None else None
    except ValueError:
        return None
    return int(number) if number is not None and number.is_integer() and number >= 1 else None


def _flatten(nested: pd.DataFrame) -> pd.DataFrame:
    """One row per item of the nested JSONL form; a line without a list of items keeps a read error."""
    rows: list[dict[str, Any]] = []
    errors = nested.get(rio.READ_ERROR_COL, pd.Series([None] * len(nested)))
    for (_, record), error in zip(nested.iterrows(), errors, strict=True):
        head = {c: record.get(c) for c in ("experiment_id", "query_id", "query")}
        items = record.get("items")
        if not isinstance(error, str) and not (isinstance(items, list)
                                               and all(isinstance(i, dict) for i in items)):
            error = f"'items' of query_id {head['query_id']!r} is not a list of objects"
        if isinstance(error, str):
            rows.append({**head, rio.READ_ERROR_COL: error})
            continue
        rows += [{**head, **{c: item.get(c) for c in ("position", "product_id", "team")}} for item in items]
    return pd.DataFrame.from_records(rows, columns=[*REQUIRED, rio.READ_ERROR_COL])


def export_problems(export: pd.DataFrame) -> list[str]:
    """What makes ``export`` unusable for the analysis (empty when it is a valid team-draft export)."""
    missing = [c for c in REQUIRED if c not in export.columns]
    if missing:
        return [f"missing required column(s) {missing}; found {list(export.columns)}"]
    problems: list[str] = []
    df = export.reset_index(drop=True)
    if rio.READ_ERROR_COL in df.columns:
        problems += [f"row {i} unreadable ({err}), the file looks truncated or edited"
                     for i, err in enumerate(df[rio.READ_ERROR_COL]) if isinstance(err, str)]
    at: dict[tuple[str, int], list[str]] = defaultdict(list)
    where: dict[tuple[str, str], list[int]] = defaultdict(list)
    texts: dict[str, set[str]] = defaultdict(set)
    for i, (exp, q, text, pos_raw, p, team) in enumerate(zip(*(df[c] for c in REQUIRED), strict=True)):
        qid, pid, pos = as_id(q), as_id(p), _position(pos_raw)
        bad = [f"missing {c}" for c, v in (("experiment_id", as_id(exp)), ("query_id", qid),
                                            ("product_id", pid)) if v is None]
        if pos is None:
            bad.append(f"position {pos_raw!r} is not a whole number >= 1")
        if team not in TEAMS:
            bad.append(f"team {team!r} is neither 'control' nor 'variation'")
        if bad:
            problems.append(f"row {i}: " + ", ".join(bad))
            continue
        at[(qid, pos)].append(pid)
        where[(qid, pid)].append(pos)
        texts[qid].add(str(text))
    for (qid, pos), items in at.items():
        if len(items) > 1:
            problems.append(f"query_id {qid!r} has {len(items)} items at position {pos} ({items[:4]})")
    for (qid, pid), positions in where.items():
        if len(positions) > 1:
            problems.append(f"query_id {qid!r} lists product {pid!r} at positions {sorted(positions)}")
    positions: dict[str, set[int]] = defaultdict(set)
    for qid, pos in at:
        positions[qid].add(pos)
    for qid, seen in positions.items():
        if max(seen) != len(seen):
            gaps = sorted(set(range(1, max(seen) + 1)) - seen)
            problems.append(f"query_id {qid!r} has no item at position(s) {gaps[:5]} of 1..{max(seen)}")
    problems += [f"query_id {qid!r} has {len(t)} query texts" for qid, t in texts.items() if len(t) > 1]
    return problems


def read_export(source: str | Path) -> pd.DataFrame:
    """The export at ``source``, checked (:func:`export_problems`) and normalised; :class:`ExportError`
    naming the file, the first problems and the fix otherwise."""
    try:
        export = rio.read_table(source)
    except rio.TableReadError as exc:
        raise ExportError(f"interleaving export cannot be read: {exc}; {REPAIR}") from exc
    if "items" in export.columns and "position" not in export.columns:
        export = _flatten(export)
    problems = export_problems(export)
    if problems:
        more = f" (and {len(problems) - SHOWN} more)" if len(problems) > SHOWN else ""
        raise ExportError(f"interleaving export {source} is not a valid team-draft export: "
                          f"{'; '.join(problems[:SHOWN])}{more}; {REPAIR}")
    export = export.drop(columns=[rio.READ_ERROR_COL], errors="ignore").reset_index(drop=True)
    for col in ("experiment_id", "query_id", "product_id"):
        export[col] = [as_id(v) for v in export[col]]
    export["position"] = pd.Series([_position(v) for v in export["position"]], dtype="int64")
    logger.debug("interleaving export %s: %d items in %d lists", source, len(export),
                 export["query_id"].nunique())
    return export
