"""Data contracts for the three input tables: every row ends up valid or rejected with a reason.

| table | required columns | optional columns |
| --- | --- | --- |
| catalog | ``product_id``, ``title``, ``description`` (may be empty) | ``attributes`` (text, dict or JSON object, rendered ``name: value \\| ...``), ``features`` (alias for attribute text, used where ``attributes`` is empty), extras (passed through) |
| search log | ``query_id``, ``query``, ``product_id`` | ``label`` (0..1, null = unlabelled), ``traffic`` (count >= 0), ``event_date`` (a date; ISO 8601 ``YYYY-MM-DD`` recommended), extras |
| queries (golden) | ``query_id``, ``query`` and one of ``tail`` (bool), ``traffic`` (count >= 0; rarest ``tail_fraction`` -> tail, ties by query_id), ``rarity_tier`` (tail = ``"tail"``) | extras |
| judgments (golden) | ``query_id``, ``product_id``, ``grade`` (``label`` instead when labels come from a column) | ``label``, extras |

A missing required column is a table-level :class:`ContractError`. Row problems never drop a row
silently: ``len(valid) + len(rejects) == rows in``. Each reject keeps its original values plus
``row_number`` (0-based input position) and ``reason`` (problems joined with ``"; "``, each
``"<kind>"`` or ``"<kind>: <detail>"``; the kinds are the ``R_*`` constants). Duplicates are judged
among otherwise-valid rows: the first keeps, later ones name it. Valid ids are stripped strings.

Clean catalog columns: ``product_id, title, description_raw, description, attributes_raw, attributes,
text, content_hash`` + extras; ``text`` = description + " | " + attributes (whichever is non-empty),
cleaned and capped at ``max_text_tokens``; ``content_hash`` covers the cleaned title, description and
attributes. Judgment grades are normalised to strings (``3.0`` -> ``"3"``) and looked up
case-insensitively in ``grade_map``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd

from relsum.config import cfg
from relsum.data.io import READ_ERROR_COL
from relsum.data.sanitize import clean_text, content_hash, has_undecodable, is_missing, render_attributes

logger = logging.getLogger(__name__)

PAPER_GRADE_MAP = {"4": 1.0, "3": 0.5, "2": 0.0, "1": 0.0, "0": 0.0}
(R_READ, R_UNDECODABLE, R_MISSING_KEY, R_DUPLICATE, R_EMPTY_TITLE, R_EMPTY_QUERY, R_LABEL_NAN, R_LABEL_RANGE,
 R_MISSING_LABEL, R_TRAFFIC_NAN, R_TRAFFIC_NEG, R_MISSING_TRAFFIC, R_DATE, R_MISSING_GRADE, R_UNKNOWN_GRADE,
 R_UNKNOWN_PRODUCT, R_UNKNOWN_QUERY, R_DUP_JUDGMENT, R_CONFLICT_QUERY, R_TAIL_BOOL, R_MISSING_TIER) = (
    "unreadable row", "undecodable text", "missing key", "duplicate key", "empty title", "empty query",
    "label not a number", "label out of range", "missing label", "traffic not a number", "negative traffic",
    "missing traffic", "unparseable date", "missing grade", "unknown grade", "unknown product",
    "unknown query", "duplicate judgment", "conflicting query text", "tail not a boolean",
    "missing rarity_tier")


class ContractError(ValueError):
    """A table that cannot be validated row by row (e.g. a required column is missing)."""

    def __init__(self, table: str, missing: Iterable[str] = (), message: str | None = None):
        self.table, self.missing = table, list(missing)
        super().__init__(message or f"{table}: missing required column(s) {self.missing}")


@dataclasses.dataclass
class ContractConfig:
    """How strict the contracts are and how grades become labels."""

    max_title_tokens: int = cfg(64, help="cap on cleaned title length, in whitespace-separated words")
    max_text_tokens: int = cfg(256, help="cap on cleaned description, attributes and text, in words")
    grade_map: dict[str, float] | None = cfg(
        dict(PAPER_GRADE_MAP), help="judgment grade -> label in [0, 1] (keys matched as strings, "
        "case-insensitively); None = take labels from the judgments' label column")
    default_label: float | None = cfg(None, help="label for grades not in grade_map; None rejects them")
    use_label_column: bool = cfg(False, help="take judgment labels from the label column, not grade_map")
    tail_fraction: float = cfg(1 / 3, help="share of queries, rarest by traffic, that count as tail")

    def __post_init__(self) -> None:
        if self.max_title_tokens < 1 or self.max_text_tokens < 1:
            raise ValueError("max_title_tokens and max_text_tokens must be >= 1")
        if not 0 < self.tail_fraction < 1:
            raise ValueError(f"tail_fraction must be in (0, 1), got {self.tail_fraction}")
        if self.grade_map is not None:
            self.grade_map = {grade_key(k): float(v) for k, v in self.grade_map.items()}
            bad = {k: v for k, v in self.grade_map.items() if not 0.0 <= v <= 1.0}
            if bad:
                raise ValueError(f"grade_map labels must be in [0, 1]: {bad}")
        if self.default_label is not None and not 0.0 <= self.default_label <= 1.0:
            raise ValueError(f"default_label must be in [0, 1], got {self.default_label}")


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


def as_id(value: Any) -> str | None:
    """An id as a stripped string (ints and whole floats without ``.0``); missing or blank -> None."""
    if is_missing(value):
        return None
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    text = str(value).strip()
    return text or None


def grade_key(value: Any) -> str | None:
    """A grade as a lookup string: ``3``, ``3.0`` and ``" 3 "`` -> ``"3"``; text stays text."""
    key = as_id(value)
    if key is None:
        return None
    try:
        number = float(key)
    except ValueError:
        return key
    return str(int(number)) if number.is_integer() else key


class _Rows:
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
                for i in np.flatnonzero(self.df[col].map(has_undecodable).to_numpy(dtype=bool)):
                    bad_cols[i].append(str(col))
        for i, cols in enumerate(bad_cols):
            if cols:
                self.problems[i].append((R_UNDECODABLE, ", ".join(cols)))

    def where(self, mask: Any, kind: str, detail: Any = None) -> None:
        for i in np.flatnonzero(np.asarray(mask, dtype=bool)):
            d = detail[i] if isinstance(detail, list | pd.Series | np.ndarray) else detail
            self.problems[i].append((kind, None if d is None else str(d)))

    def ids(self, col: str) -> list[str | None]:
        ids = [as_id(v) for v in self.df[col]]
        self.where([i is None for i in ids], R_MISSING_KEY, col)
        return ids

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
        """Floats of ``col`` (NaN where missing/bad); non-numbers (inf too) and, optionally, missing are flagged."""
        out = np.full(len(self.df), np.nan)
        for i, v in enumerate(self.df[col]):
            if is_missing(v) or (isinstance(v, str) and not v.strip()):
                if missing_kind:
                    self.problems[i].append((missing_kind, None))
                continue
            try:
                if isinstance(v, bool | np.bool_):
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
        rejects["reason"] = ["; ".join(k if d is None else f"{k}: {d}" for k, d in p) for p in self.problems if p]
        counts = Counter(k for p in self.problems for k, _ in p)
        valid = valid.loc[~bad].reset_index(drop=True)
        res = ValidationResult(self.table, valid, rejects.reset_index(drop=True), len(self.df), dict(counts))
        logger.debug("%s: %d rows, %d valid, %d rejected %s", self.table, res.rows_in, len(res.valid),
                    len(res.rejects), res.summary()["reasons"] or "")
        return res

    def extras(self, used: set[str]) -> pd.DataFrame:
        return self.df[[c for c in self.df.columns if c not in used | {READ_ERROR_COL}]]


def _clean_all(values: Iterable[Any], max_tokens: int | None) -> list[str]:
    return [clean_text(v, max_tokens) for v in values]


def validate_catalog(df: pd.DataFrame, config: ContractConfig | None = None) -> ValidationResult:
    """Validate and clean the product catalog (columns in the module docstring)."""
    config = config or ContractConfig()
    rows = _Rows("catalog", df, ["product_id", "title", "description"])
    n, d = len(rows.df), rows.df
    ids = rows.ids("product_id")
    title = _clean_all(d["title"], config.max_title_tokens)
    rows.where([not t for t in title], R_EMPTY_TITLE)
    desc_raw = ["" if is_missing(v) else str(v) for v in d["description"]]
    attr_raw = [render_attributes(v) for v in d["attributes"]] if "attributes" in d else [""] * n
    if "features" in d:
        attr_raw = [a if a.strip() else render_attributes(f) for a, f in zip(attr_raw, d["features"], strict=True)]
    desc, attrs = _clean_all(desc_raw, config.max_text_tokens), _clean_all(attr_raw, config.max_text_tokens)
    text = [clean_text(" | ".join(p for p in (a, b) if p), config.max_text_tokens) for a, b in zip(desc, attrs, strict=True)]
    rows.dedupe(ids, R_DUPLICATE, lambda k: f"product_id {k!r}")
    out = pd.DataFrame({
        "product_id": ids, "title": title, "description_raw": desc_raw, "description": desc,
        "attributes_raw": attr_raw, "attributes": attrs, "text": text,
        "content_hash": [content_hash(*p) for p in zip(title, desc, attrs, strict=True)]})
    extras = rows.extras({"product_id", "title", "description", "attributes", "features"})
    return rows.result(pd.concat([out, extras], axis=1))


def _query_text(rows: _Rows) -> list[str]:
    query = _clean_all(rows.df["query"], None)
    rows.where([not q for q in query], R_EMPTY_QUERY)
    return query


def _check_label(rows: _Rows, missing_kind: str | None) -> np.ndarray:
    label = rows.numbers("label", R_LABEL_NAN, missing_kind)
    rows.where(~np.isnan(label) & ((label < 0) | (label > 1)), R_LABEL_RANGE, list(label))
    return label


def _check_traffic(rows: _Rows, missing_kind: str | None) -> np.ndarray:
    traffic = rows.numbers("traffic", R_TRAFFIC_NAN, missing_kind)
    rows.where(~np.isnan(traffic) & (traffic < 0), R_TRAFFIC_NEG, list(traffic))
    return traffic


def _dates(rows: _Rows, col: str) -> list[Any]:
    raw = rows.df[col]
    missing = raw.map(lambda v: is_missing(v) or (isinstance(v, str) and not v.strip())).to_numpy(dtype=bool)
    parsed = []
    for v, m in zip(raw, missing, strict=True):
        try:  # numbers are rejected: epoch offsets in unknown units are a guess, not a date
            if not m and isinstance(v, int | float | np.number):
                raise TypeError
            parsed.append(None if m else pd.Timestamp(v.strip() if isinstance(v, str) else v).date())
        except (TypeError, ValueError, OverflowError, NotImplementedError):
            parsed.append(None)
    rows.where([p is None and not m for p, m in zip(parsed, missing, strict=True)], R_DATE, list(raw))
    return parsed


def validate_search_log(df: pd.DataFrame, config: ContractConfig | None = None,
                        known_products: set[str] | None = None) -> ValidationResult:
    """Validate search-log (query, product) pairs; ``known_products`` flags pairs for unknown products."""
    rows = _Rows("search_log", df, ["query_id", "query", "product_id"])
    qids, pids, query = rows.ids("query_id"), rows.ids("product_id"), _query_text(rows)
    out = pd.DataFrame({"query_id": qids, "query": query, "product_id": pids})
    if "label" in rows.df:
        out["label"] = _check_label(rows, None)
    if "traffic" in rows.df:
        out["traffic"] = _check_traffic(rows, None)
    if "event_date" in rows.df:
        out["event_date"] = _dates(rows, "event_date")
    if known_products is not None:
        rows.where([p is not None and p not in known_products for p in pids], R_UNKNOWN_PRODUCT, pids)
    seen: dict[str, tuple[str, int]] = {}
    for i, (q, text) in enumerate(zip(qids, query, strict=True)):
        if rows.ok(i) and seen.setdefault(q, (text, i))[0] != text:
            rows.problems[i].append((R_CONFLICT_QUERY, f"query_id {q!r} is {seen[q][0]!r} at row {seen[q][1]}"))
    keys = list(zip(qids, pids, out["event_date"] if "event_date" in out else [None] * len(out), strict=True))
    rows.dedupe(keys, R_DUPLICATE, lambda k: f"pair {k[:2]!r}" + (f" on {k[2]}" if k[2] else ""))
    return rows.result(pd.concat([out, rows.extras({*out.columns})], axis=1))


_TRUE, _FALSE = {"true", "1", "yes", "y", "t"}, {"false", "0", "no", "n", "f"}


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    text = "" if is_missing(value) else str(value).strip().lower()
    text = text[:-2] if text.endswith(".0") else text
    return True if text in _TRUE else False if text in _FALSE else None


def validate_queries(df: pd.DataFrame, config: ContractConfig | None = None) -> ValidationResult:
    """Validate golden queries and attach ``tail`` (from ``tail``, else ``traffic``, else ``rarity_tier``)."""
    config = config or ContractConfig()
    rows = _Rows("queries", df, ["query_id", "query"])
    cols = set(rows.df.columns)
    if not cols & {"tail", "traffic", "rarity_tier"}:
        raise ContractError("queries", ["tail"], (
            "queries: cannot tell tail queries; give a 'tail' column (bool), a 'traffic' column (count; "
            f"the rarest {config.tail_fraction:.3g} become tail) or a 'rarity_tier' column (tail == 'tail')"))
    qids, query = rows.ids("query_id"), _query_text(rows)
    out = pd.DataFrame({"query_id": qids, "query": query})
    traffic = None
    if "tail" in cols:
        tail = [_as_bool(v) for v in rows.df["tail"]]
        rows.where([t is None for t in tail], R_TAIL_BOOL, list(rows.df["tail"]))
    elif "traffic" in cols:
        traffic = out["traffic"] = _check_traffic(rows, R_MISSING_TRAFFIC)
        tail = [False] * len(qids)
    else:
        tier = [None if is_missing(v) else str(v).strip().lower() for v in rows.df["rarity_tier"]]
        rows.where([not t for t in tier], R_MISSING_TIER)
        tail = [t == "tail" for t in tier]
    rows.dedupe(qids, R_DUPLICATE, lambda k: f"query_id {k!r}")
    if traffic is not None:
        ok = [i for i in range(len(qids)) if rows.ok(i)]
        ranked = sorted(ok, key=lambda i: (traffic[i], qids[i]))
        for i in ranked[: int(round(len(ok) * config.tail_fraction))]:
            tail[i] = True
    out["tail"] = pd.Series([bool(t) for t in tail], dtype=bool)
    return rows.result(pd.concat([out, rows.extras({*out.columns})], axis=1))


def validate_judgments(df: pd.DataFrame, config: ContractConfig | None = None,
                       known_queries: set[str] | None = None,
                       known_products: set[str] | None = None) -> ValidationResult:
    """Validate judgments and attach ``label`` from ``grade_map`` (or from the label column)."""
    config = config or ContractConfig()
    from_column = config.use_label_column or config.grade_map is None
    rows = _Rows("judgments", df, ["query_id", "product_id", "label" if from_column else "grade"])
    qids, pids = rows.ids("query_id"), rows.ids("product_id")
    grades = [grade_key(v) for v in rows.df["grade"]] if "grade" in rows.df else [None] * len(qids)
    out = pd.DataFrame({"query_id": qids, "product_id": pids, "grade": grades})
    if from_column:
        out["label"] = _check_label(rows, R_MISSING_LABEL)
    else:
        lookup = {k.casefold(): v for k, v in (config.grade_map or {}).items()}
        labels = [np.nan if g is None else lookup.get(g.casefold(), config.default_label) for g in grades]
        rows.where([g is None for g in grades], R_MISSING_GRADE)
        rows.where([g is not None and lab is None for g, lab in zip(grades, labels, strict=True)],
                   R_UNKNOWN_GRADE, [repr(g) for g in grades])
        out["label"] = np.array([np.nan if lab is None else lab for lab in labels], dtype=float)
        if "label" in rows.df:
            given = pd.to_numeric(rows.df["label"], errors="coerce").to_numpy(dtype=float)
            differ = int(np.sum(~np.isnan(given) & (np.abs(given - out["label"].to_numpy()) > 1e-9)))
            if differ:
                logger.warning("judgments: %d of %d rows have a label column that disagrees with grade_map; "
                               "grade_map wins (set use_label_column to use the column)", differ, len(given))
            out["label_input"] = rows.df["label"]
    if known_queries is not None:
        rows.where([q is not None and q not in known_queries for q in qids], R_UNKNOWN_QUERY, qids)
    if known_products is not None:
        rows.where([p is not None and p not in known_products for p in pids], R_UNKNOWN_PRODUCT, pids)
    rows.dedupe(list(zip(qids, pids, strict=True)), R_DUP_JUDGMENT, lambda k: f"{k!r}")
    return rows.result(pd.concat([out, rows.extras({"query_id", "product_id", "grade", "label"})], axis=1))
