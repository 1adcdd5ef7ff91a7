"""The vocabulary of the data contracts: reason kinds, errors, results, accepted value types.

Defines the names the per-table validators in :mod:`relsum.data.contracts` speak in, so those read as
checks only; every name here is re-exported from :mod:`relsum.data.contracts`, the import path to use.
The settings (:mod:`relsum.data.config`) and the id helpers (:mod:`relsum.data.ids`) live in
modules without numpy and pandas, so stage configs can embed them cheaply.

Accepted Python types per column kind (Parquet and JSONL keep their own types; CSV cells are text):

- id: Columns: ``product_id``, ``query_id``. Accepted: ``str``; ``int``; a whole ``float`` (``12.0`` ->
  ``"12"``: an int column with nulls comes out of Parquet as float). Rejected as ``wrong type``: ``bool``,
  ``bytes``, fractional floats (``1.5``), anything else.
- text: Columns: ``title``, ``description``, ``query``, ``rarity_tier``. Accepted: ``str``. Rejected as
  ``wrong type``: ``bytes``, ``bool``, numbers, anything else.
- attributes: Columns: ``attributes``, ``features``. Accepted: ``str``, ``dict``, a list; nested values any
  scalar but ``bytes``. Rejected as ``wrong type``: ``bytes`` anywhere, a bare number or ``bool``.

Nothing is coerced: ``str(b"x")`` would put ``"b'x'"`` in front of the model, ``str(True)`` ``"True"``.
The strings ``nan``, ``none`` and ``null`` (any case, surrounding blanks) in an id or text column are
null markers left by a serializer, not values: they count as missing (``NA`` and ``N/A`` stay text).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from relsum.core.errors import InputError

(R_READ, R_UNDECODABLE, R_MISSING_KEY, R_DUPLICATE, R_EMPTY_TITLE, R_EMPTY_QUERY, R_LABEL_NAN, R_LABEL_RANGE,
 R_MISSING_LABEL, R_TRAFFIC_NAN, R_TRAFFIC_NEG, R_MISSING_TRAFFIC, R_DATE, R_MISSING_GRADE, R_UNKNOWN_GRADE,
 R_UNKNOWN_PRODUCT, R_UNKNOWN_QUERY, R_DUP_JUDGMENT, R_CONFLICT_QUERY, R_TAIL_BOOL, R_MISSING_TIER,
 R_WRONG_TYPE) = (
    "unreadable row", "undecodable text", "missing key", "duplicate key", "empty title", "empty query",
    "label not a number", "label out of range", "missing label", "traffic not a number", "negative traffic",
    "missing traffic", "unparseable date", "missing grade", "unknown grade", "unknown product",
    "unknown query", "duplicate judgment", "conflicting query text", "tail not a boolean",
    "missing rarity_tier", "wrong type")
NULL_MARKERS = frozenset({"nan", "none", "null"})


class ContractError(InputError):
    """A table that cannot be validated row by row (e.g. a required column is missing)."""

    def __init__(self, table: str, missing: Iterable[str] = (), message: str | None = None):
        self.table, self.missing = table, list(missing)
        super().__init__(message or f"{table}: missing required column(s) {self.missing}")


@dataclasses.dataclass
class ValidationResult:
    """Valid rows (cleaned) and rejects (original values + ``row_number`` + ``reason``) of one table."""

    table: str
    valid: pd.DataFrame
    rejects: pd.DataFrame
    rows_in: int = 0
    reason_counts: dict[str, int] = dataclasses.field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Rows in / valid / rejected and reject counts by reason kind (a row may have several)."""
        return {"table": self.table, "rows_in": self.rows_in, "valid": len(self.valid),
                "rejected": len(self.rejects), "reasons": dict(sorted(self.reason_counts.items()))}


def is_null_marker(value: Any) -> bool:
    """True for the strings ``nan``/``none``/``null`` (any case): what ``str()`` of a missing value gives."""
    return isinstance(value, str) and value.strip().lower() in NULL_MARKERS


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"


def id_type_problem(value: Any) -> str | None:
    """Why ``value`` (not missing) cannot be an id, or None when it can (accepted types: module docstring)."""
    if isinstance(value, str | np.str_):
        return None
    if isinstance(value, bool | np.bool_):
        return _shown(value)
    if isinstance(value, int | np.integer):
        return None
    if isinstance(value, float | np.floating) and np.isfinite(value) and float(value).is_integer():
        return None
    return _shown(value)


def text_type_problem(value: Any) -> str | None:
    """Why ``value`` (not missing) cannot be text, or None when it is a ``str``."""
    return None if isinstance(value, str | np.str_) else _shown(value)


def attribute_type_problem(value: Any) -> str | None:
    """Why ``value`` (not missing) cannot be rendered as attributes, or None (accepted: module docstring)."""
    if isinstance(value, str | np.str_ | dict):
        return _nested_bytes(value)
    if hasattr(value, "tolist") and not isinstance(value, np.generic):  # Parquet lists arrive as arrays
        value = value.tolist()
    if isinstance(value, list | tuple):
        return _nested_bytes(value)
    return _shown(value)


def _nested_bytes(value: Any) -> str | None:
    """The first ``bytes`` anywhere in ``value`` (dict keys and values in order), shown; None if none."""
    if isinstance(value, str):
        return None
    if isinstance(value, bytes | bytearray):
        return _shown(value)
    if isinstance(value, dict):
        parts: Any = [part for item in value.items() for part in item]
    elif isinstance(value, list | tuple):
        parts = value
    else:
        return None
    for part in parts:
        if not isinstance(part, str):  # text is the common case: no call for it
            problem = _nested_bytes(part)
            if problem:
                return problem
    return None
