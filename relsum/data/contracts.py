"""Data contracts for the three input tables: every row ends up valid or rejected with a reason.

- catalog: Required columns: ``product_id``, ``title``, ``description`` (may be empty or missing). Optional
  columns: ``attributes`` (text, dict or JSON object, rendered ``name: value \\| ...``), ``features`` (alias
  for attribute text, used where ``attributes`` is empty), extras (passed through).
- search log: Required columns: ``query_id``, ``query``, ``product_id``. Optional columns: ``label`` (0..1,
  null = unlabelled), ``traffic`` (count >= 0), ``event_date`` (a date; ISO 8601 ``YYYY-MM-DD`` recommended),
  extras.
- queries (golden): Required columns: ``query_id``, ``query`` and one of ``tail`` (bool), ``traffic`` (count
  >= 0; rarest ``tail_fraction`` -> tail, ties by query_id), ``rarity_tier`` (tail = ``"tail"``). Optional
  columns: extras.
- judgments (golden): Required columns: ``query_id``, ``product_id``, ``grade`` (``label`` instead when labels
  come from a column). Optional columns: ``label``, extras.

A missing required column is a table-level :class:`ContractError`. Row problems never drop a row
silently: ``len(valid) + len(rejects) == rows in``. Each reject keeps its original values plus
``row_number`` (0-based input position) and ``reason`` (problems joined with ``"; "``, each
``"<kind>"`` or ``"<kind>: <detail>"``; the kinds are the ``R_*`` constants). Duplicates are judged
among otherwise-valid rows: the first keeps, later ones name it. Valid ids are stripped strings.
Which Python types each column accepts (nothing is coerced with ``str()``) and the null markers
(``"NaN"``, ``"None"``, ``"null"`` count as missing) are in :mod:`relsum.data.contract_types`.

A search-log ``query_id`` must have one query text. Among its otherwise-valid rows the most frequent
text wins and the other rows are rejected (``conflicting query text``, naming the winner and its count);
when two texts tie for the most rows every row of that id is rejected, since there is no telling which
text the id stands for. One bad row therefore costs one row, not its siblings, whatever the row order.

Clean catalog columns: ``product_id, title, description_raw, description, attributes_raw, attributes,
text, content_hash`` + extras; ``text`` = description + " | " + attributes (whichever is non-empty),
cleaned and capped at ``max_text_tokens``; ``content_hash`` covers the cleaned title, description and
attributes. Judgment grades are normalised to strings (``3.0`` -> ``"3"``) and looked up
case-insensitively in ``grade_map``.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from relsum.data.config import ContractConfig
from relsum.data.contract_rows import RowChecks
from relsum.data.contract_types import (
    R_CONFLICT_QUERY,
    R_DATE,
    R_DUP_JUDGMENT,
    R_DUPLICATE,
    R_EMPTY_QUERY,
    R_EMPTY_TITLE,
    R_LABEL_NAN,
    R_LABEL_RANGE,
    R_MISSING_GRADE,
    R_MISSING_KEY,
    R_MISSING_LABEL,
    R_MISSING_TIER,
    R_MISSING_TRAFFIC,
    R_READ,
    R_TAIL_BOOL,
    R_TRAFFIC_NAN,
    R_TRAFFIC_NEG,
    R_UNDECODABLE,
    R_UNKNOWN_GRADE,
    R_UNKNOWN_PRODUCT,
    R_UNKNOWN_QUERY,
    R_WRONG_TYPE,
    ContractError,
    ValidationResult,
    attribute_type_problem,
    is_null_marker,
    text_type_problem,
)
from relsum.data.ids import as_id, grade_key
from relsum.data.sanitize import clean_text, content_hash, is_missing, render_attributes

logger = logging.getLogger(__name__)

# The vocabulary (reason kinds, error, result) lives in relsum.data.contract_types, the id helpers in
# relsum.data.ids (no pandas, for stage configs) and the row-problem collector in relsum.data.contract_rows;
# this module stays the import path to use for them. The config, ContractConfig, is imported from
# relsum.data.config only.
__all__ = [
    "R_CONFLICT_QUERY", "R_DATE", "R_DUPLICATE", "R_DUP_JUDGMENT", "R_EMPTY_QUERY",
    "R_EMPTY_TITLE", "R_LABEL_NAN", "R_LABEL_RANGE", "R_MISSING_GRADE", "R_MISSING_KEY", "R_MISSING_LABEL",
    "R_MISSING_TIER", "R_MISSING_TRAFFIC", "R_READ", "R_TAIL_BOOL", "R_TRAFFIC_NAN", "R_TRAFFIC_NEG",
    "R_UNDECODABLE", "R_UNKNOWN_GRADE", "R_UNKNOWN_PRODUCT", "R_UNKNOWN_QUERY", "R_WRONG_TYPE",
    "ContractError", "ValidationResult", "as_id", "grade_key", "validate_catalog", "validate_judgments",
    "validate_queries", "validate_search_log"]


def _clean_all(values: Iterable[Any], max_tokens: int | None) -> list[str]:
    return [clean_text(v, max_tokens) for v in values]


def _attributes(rows: RowChecks, col: str) -> list[str]:
    out = []
    for i, v in enumerate(rows.df[col]):
        problem = None if is_missing(v) else attribute_type_problem(v)
        if problem:
            rows.problems[i].append((R_WRONG_TYPE, f"{col} is {problem}"))
        out.append("" if problem or is_null_marker(v) else render_attributes(v))
    return out


def validate_catalog(df: pd.DataFrame, config: ContractConfig | None = None) -> ValidationResult:
    """Validate and clean the product catalog (columns in the module docstring)."""
    config = config or ContractConfig()
    rows = RowChecks("catalog", df, ["product_id", "title", "description"])
    n, d = len(rows.df), rows.df
    ids = rows.ids("product_id")
    title = rows.texts("title", config.max_title_tokens, R_EMPTY_TITLE)
    desc = rows.texts("description", config.max_text_tokens)
    desc_raw = [v if isinstance(v, str) else "" for v in d["description"]]
    attr_raw = _attributes(rows, "attributes") if "attributes" in d else [""] * n
    if "features" in d:
        attr_raw = [a if a.strip() else f for a, f in zip(attr_raw, _attributes(rows, "features"),
                                                          strict=True)]
    attrs = _clean_all(attr_raw, config.max_text_tokens)
    text = [clean_text(" | ".join(p for p in (a, b) if p), config.max_text_tokens) for a,
            b in zip(desc, attrs, strict=True)]
    rows.dedupe(ids, R_DUPLICATE, lambda k: f"product_id {k!r}")
    out = pd.DataFrame({
        "product_id": ids, "title": title, "description_raw": desc_raw, "description": desc,
        "attributes_raw": attr_raw, "attributes": attrs, "text": text,
        "content_hash": [content_hash(*p) for p in zip(title, desc, attrs, strict=True)]})
    extras = rows.extras({"product_id", "title", "description", "attributes", "features"})
    return rows.result(pd.concat([out, extras], axis=1))


def _query_text(rows: RowChecks) -> list[str]:
    return rows.texts("query", None, R_EMPTY_QUERY)


def _check_label(rows: RowChecks, missing_kind: str | None) -> np.ndarray:
    label = rows.numbers("label", R_LABEL_NAN, missing_kind)
    rows.where(~np.isnan(label) & ((label < 0) | (label > 1)), R_LABEL_RANGE, list(label))
    return label


def _check_traffic(rows: RowChecks, missing_kind: str | None) -> np.ndarray:
    traffic = rows.numbers("traffic", R_TRAFFIC_NAN, missing_kind)
    rows.where(~np.isnan(traffic) & (traffic < 0), R_TRAFFIC_NEG, list(traffic))
    return traffic


def _dates(rows: RowChecks, col: str) -> list[Any]:
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
    rows = RowChecks("search_log", df, ["query_id", "query", "product_id"])
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
    _majority_query_text(rows, qids, query)
    keys = list(zip(qids, pids, out["event_date"] if "event_date" in out else [None] * len(out), strict=True))
    rows.dedupe(keys, R_DUPLICATE, lambda k: f"pair {k[:2]!r}" + (f" on {k[2]}" if k[2] else ""))
    return rows.result(pd.concat([out, rows.extras({*out.columns})], axis=1))


def _majority_query_text(rows: RowChecks, qids: list[str | None], query: list[str]) -> None:
    """One text per query_id: the most frequent among its otherwise-valid rows; a tie rejects them all."""
    members: dict[str, list[int]] = defaultdict(list)
    for i, q in enumerate(qids):
        if rows.ok(i):
            members[q].append(i)
    for q, idx in members.items():
        counts = Counter(query[i] for i in idx).most_common()
        if len(counts) < 2:
            continue
        (top, n_top), (_, n_next) = counts[0], counts[1]
        shown = ", ".join(f"{t!r} x{c}" for t, c in counts[:3]) + (", ..." if len(counts) > 3 else "")
        for i in idx:
            if n_top == n_next:
                rows.problems[i].append((R_CONFLICT_QUERY, f"query_id {q!r} has no majority text ({shown})"))
            elif query[i] != top:
                rows.problems[i].append((R_CONFLICT_QUERY, f"query_id {q!r} is {top!r} "
                                                           f"in {n_top} of {len(idx)} rows"))


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
    rows = RowChecks("queries", df, ["query_id", "query"])
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
        bad = [not is_missing(v) and text_type_problem(v) for v in rows.df["rarity_tier"]]
        rows.where([bool(b) for b in bad], R_WRONG_TYPE, [f"rarity_tier is {b}" if b else None for b in bad])
        tier = [None if is_missing(v) or b or is_null_marker(v) else str(v).strip().lower()
                for v, b in zip(rows.df["rarity_tier"], bad, strict=True)]
        rows.where([not t and not b for t, b in zip(tier, bad, strict=True)], R_MISSING_TIER)
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
    rows = RowChecks("judgments", df, ["query_id", "product_id", "label" if from_column else "grade"])
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
