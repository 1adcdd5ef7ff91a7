"""The row-problem collector behind every contract: each input row gets a list of (kind, detail) problems.

Records, deduplicates and turns problems into valid/reject frames (``len(valid) + len(rejects) ==
rows in``), once for all tables, so the per-table validators in :mod:`relsum.data.contracts` only say
*what* is checked. """

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from relsum.data.contract_types import (
    R_MISSING_KEY,
    R_READ,
    R_UNDECODABLE,
    R_WRONG_TYPE,
    ContractError,
    ValidationResult,
    id_type_problem,
    is_null_marker,
    text_type_problem,
)
from relsum.data.ids import as_id
from relsum.data.io import READ_ERROR_COL
from relsum.data.sanitize import clean_text, has_undecodable, is_missing

logger = logging.getLogger(__name__)


class RowChecks:
    """Collects (kind, detail) problems per row and builds the result."""

    def __init__(self, table: str, df: pd.DataFrame, required: list[str]):
        missing = [c for c in required if c not in df.columns]
        if missing:
            raise ContractError(table, missing)
        self.table, self.df = table, df.reset_index(drop=True)
        self.problems: list[list[tuple[str, str | None]]] = [[] for _ in range(len(self.df))]
        if READ_ERROR_COL in self.df.columns:
            self.where(~self.df[READ_ERROR_COL].map(is_missing), R_READ, list(self.df[READ_ERROR_COL]))
        bad_cols: list[list[str]] = [[] for _ in range(len(self.df))]
        for col in self.df.columns:
            if self.df[col].dtype == object or pd.api.types.is_string_dtype(self.df[col]):
                values = self.df[col].tolist()
                if not has_undecodable(values):  # the usual case, in one search for the whole column
                    continue
                for i, value in enumerate(values):
                    if has_undecodable(value):
                        bad_cols[i].append(str(col))
        for i, cols in enumerate(bad_cols):
            if cols:
                self.problems[i].append((R_UNDECODABLE, ", ".join(cols)))

    def where(self, mask: Any, kind: str, detail: Any = None) -> None:
        for i in np.flatnonzero(np.asarray(mask, dtype=bool)):
            d = detail[i] if isinstance(detail, list | pd.Series | np.ndarray) else detail
            self.problems[i].append((kind, None if d is None else str(d)))

    def ids(self, col: str) -> list[str | None]:
        """Stripped string ids; missing, blank or null-marker ids and ids of a wrong type are flagged
        (None)."""
        ids: list[str | None] = []
        for i, v in enumerate(self.df[col]):
            problem = None if is_missing(v) else id_type_problem(v)
            if problem:
                self.problems[i].append((R_WRONG_TYPE, f"{col} is {problem}"))
                ids.append(None)
                continue
            key = as_id(v)
            if key is None or is_null_marker(key):
                self.problems[i].append((R_MISSING_KEY, col if key is None else f"{col} is {key!r}"))
                key = None
            ids.append(key)
        return ids

    def texts(self, col: str, max_tokens: int | None, empty_kind: str | None = None) -> list[str]:
        """Cleaned text of a text column; a value that is not a ``str`` is flagged (and gives ``""``).

        Missing values, blank text and null markers (``"NaN"``, ``"None"``, ``"null"``) give ``""``; with
        ``empty_kind`` such rows are flagged with it (a null marker is named in the detail).
        """
        out: list[str] = []
        for i, v in enumerate(self.df[col]):
            problem = None if is_missing(v) else text_type_problem(v)
            if problem:
                self.problems[i].append((R_WRONG_TYPE, f"{col} is {problem}"))
                out.append("")
                continue
            null = not is_missing(v) and is_null_marker(v)
            out.append("" if is_missing(v) or null else clean_text(v, max_tokens))
            if empty_kind and not out[-1]:
                self.problems[i].append((empty_kind, f"{v.strip()!r} is a null marker" if null else None))
        return out

    def ok(self, i: int) -> bool:
        return not self.problems[i]

    def dedupe(self, keys: list[Any], kind: str, describe: Callable[[Any], str]) -> None:
        first: dict[Any, int] = {}
        for i, key in enumerate(keys):
            if not self.ok(i):
                continue
            if key in first:
                self.problems[i].append((kind, f"{describe(key)} first at row {first[key]}"))
            else:
                first[key] = i

    def numbers(self, col: str, nan_kind: str, missing_kind: str | None = None) -> np.ndarray:
        """Floats of ``col`` (NaN where missing/bad); non-numbers (inf too) and, optionally, missing are
        flagged."""
        out = np.full(len(self.df), np.nan)
        for i, v in enumerate(self.df[col]):
            if is_missing(v) or (isinstance(v, str) and not v.strip()):
                if missing_kind:
                    self.problems[i].append((missing_kind, None))
                continue
            try:
                # float(b"1") works; a label is no bytes
                if isinstance(v, bool | np.bool_ | bytes | bytearray):
                    raise ValueError
                out[i] = float(v)
                if not np.isfinite(out[i]):
                    raise ValueError
            except (TypeError, ValueError):
                out[i] = np.nan
                self.problems[i].append((nan_kind, repr(v)))
        return out

    def result(self, valid: pd.DataFrame) -> ValidationResult:
        bad = np.array([bool(p) for p in self.problems], dtype=bool)
        rejects = self.df.loc[bad].drop(columns=[READ_ERROR_COL], errors="ignore").copy()
        rejects["row_number"] = np.flatnonzero(bad)
        rejects["reason"] = ["; ".join(k if d is None else f"{k}: {d}" for k, d in p) for p in self.problems
                             if p]
        counts = Counter(k for p in self.problems for k, _ in p)
        valid = valid.loc[~bad].reset_index(drop=True)
        res = ValidationResult(self.table, valid, rejects.reset_index(drop=True), len(self.df), dict(counts))
        logger.debug("%s: %d rows, %d valid, %d rejected %s", self.table, res.rows_in, len(res.valid),
                    len(res.rejects), res.summary()["reasons"] or "")
        return res

    def extras(self, used: set[str]) -> pd.DataFrame:
        return self.df[[c for c in self.df.columns if c not in used | {READ_ERROR_COL}]]
