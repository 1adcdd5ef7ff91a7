"""Stage ``validate``: check every input table against its contract before anything trains on it.

Outputs under ``out_dir``:

- ``clean/<table>.parquet``: the valid, cleaned rows of each table given
- ``rejects/<table>.csv``: rejected rows (original values + ``row_number`` + ``reason``), always written,
  header-only when none
- ``flags/catalog.csv``: valid catalog rows whose title or text looks like instructions to a model
  (``product_id, field, pattern, match``), always written with a catalog
- ``validation.json``: per table: source, rows in, valid, rejected, reject rate, counts by reason kind,
  problems; the catalog's flags (count + examples); ``problems`` and ``passed`` overall

Judgments are checked against the validated queries and catalog, and the search log against the
catalog, so a pair pointing at a rejected product is itself rejected rather than silently orphaned.

A table *has a problem* when it ends up empty (a header-only input, or every row rejected) or rejects
more than ``max_reject_rate`` of its rows. Problems are always logged as warnings on the table's
summary line and listed in ``validation.json``; with ``strict`` they fail the run: :func:`run` writes
every output, then raises :class:`ValidationFailed` (the DAGs' validate tasks run strict, so a bad
feed stops before anything trains on it or summarizes it). The CLI's ``--strict`` flag exits 1 instead.

Seller text that addresses the model ("ignore previous instructions", chat markup) is kept verbatim in
the clean catalog but counted and listed (:func:`relsum.data.sanitize.find_injections`), so a team can
see what reaches the policy's prompt.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from relsum.core.config import to_dict
from relsum.core.errors import InputError
from relsum.core.paths import home
from relsum.data.contracts import (
    ValidationResult,
    validate_catalog,
    validate_judgments,
    validate_queries,
    validate_search_log,
)
from relsum.data.golden import find_grade_map
from relsum.data.io import read_table, write_csv_atomic, write_json_atomic, write_parquet_atomic
from relsum.data.sanitize import find_injections
from relsum.pipelines.configs import ValidateConfig

logger = logging.getLogger(__name__)

TABLES = ("catalog", "search_log", "queries", "judgments")
FLAG_COLUMNS = ["product_id", "field", "pattern", "match"]


class ValidationFailed(InputError):
    """Strict validation found an empty table or one over ``max_reject_rate``; outputs are written."""

    def __init__(self, message: str, summary: dict[str, Any]):
        super().__init__(message)
        self.summary = summary


def _storable(df: pd.DataFrame) -> pd.DataFrame:
    """Nested values (dicts, lists) as JSON text, so mixed columns write to Parquet and CSV alike."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object and out[col].map(lambda v: isinstance(v, dict | list | tuple)).any():
            out[col] = out[col].map(
                lambda v: json.dumps(v, ensure_ascii=False, default=str)
                if isinstance(v, dict | list | tuple) else v)
    return out


def table_problems(result: ValidationResult, max_reject_rate: float) -> list[str]:
    """Why a validated table is not fit to use: empty, or rejected share > ``max_reject_rate``; [] if fine."""
    if result.rows_in == 0:
        return ["no rows (header-only or empty input)"]
    if result.valid.empty:
        return [f"no valid rows: all {result.rows_in} rejected"]
    rate = len(result.rejects) / result.rows_in
    if rate > max_reject_rate:
        return [f"reject rate {rate:.2%} > max_reject_rate {max_reject_rate:.2%}"]
    return []


def injection_flags(catalog: pd.DataFrame, examples: int = 5) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Valid catalog rows whose title or text (what the policy's prompt shows) reads as instructions.

    Returns every hit as a frame (:data:`FLAG_COLUMNS`) and a report: flagged product count, hits by
    pattern, and the first ``examples`` hits with an excerpt. The text itself is not changed.
    """
    hits: list[dict[str, str]] = []
    excerpts: list[str] = []
    for pid, title, text in zip(catalog["product_id"], catalog["title"], catalog["text"], strict=True):
        for field, value in (("title", title), ("text", text)):
            for pattern, match in find_injections(value):
                hits.append({"product_id": pid, "field": field, "pattern": pattern, "match": match})
                at = value.find(match)
                excerpts.append(("..." if at > 40 else "") + value[max(0, at - 40): at + len(match) + 40]
                                + ("..." if at + len(match) + 40 < len(value) else ""))
    frame = pd.DataFrame(hits, columns=FLAG_COLUMNS)
    report = {"products": int(frame["product_id"].nunique()),
              "by_pattern": {k: int(v) for k, v in sorted(frame["pattern"].value_counts().items())},
              "examples": [{**h, "excerpt": e} for h,
                           e in zip(hits[:examples], excerpts[:examples], strict=True)]}
    return frame, report


def run(config: ValidateConfig) -> dict[str, Any]:
    """Validate the tables given, write clean tables, rejects, flags and ``validation.json``; return the
    summary.

    With ``config.strict``, raises :class:`ValidationFailed` after writing when any table has a problem.
    """
    out_dir = Path(config.out_dir or home() / "validate")
    results: dict[str, ValidationResult] = {}
    c, grade_map_file = config.contract, None
    if config.judgments and config.grade_map_from_folder and not config.judgments.startswith("duckdb:"):
        found = find_grade_map(Path(config.judgments).parent)
        if found is not None:
            c, grade_map_file = dataclasses.replace(c, grade_map=found[0]), str(found[1])
            logger.info("validate: judgments grade_map from %s: %s", grade_map_file, c.grade_map)
    if config.catalog:
        results["catalog"] = validate_catalog(read_table(config.catalog), c)
    products = set(results["catalog"].valid["product_id"]) if "catalog" in results else None
    if config.search_log:
        results["search_log"] = validate_search_log(read_table(config.search_log), c, known_products=products)
    if config.queries:
        results["queries"] = validate_queries(read_table(config.queries), c)
    if config.judgments:
        queries = set(results["queries"].valid["query_id"]) if "queries" in results else None
        results["judgments"] = validate_judgments(
            read_table(config.judgments), c, known_queries=queries, known_products=products)

    summary: dict[str, Any] = {"out_dir": str(out_dir), "config": to_dict(config),
                               "grade_map": c.grade_map, "grade_map_file": grade_map_file, "tables": {}}
    problems: list[str] = []
    for table, result in results.items():
        write_parquet_atomic(_storable(result.valid), out_dir / "clean" / f"{table}.parquet")
        write_csv_atomic(_storable(result.rejects), out_dir / "rejects" / f"{table}.csv")
        found = table_problems(result, config.max_reject_rate)
        problems += [f"{table}: {p}" for p in found]
        entry = summary["tables"][table] = {
            "source": getattr(config, table), **result.summary(),
            "reject_rate": round(len(result.rejects) / result.rows_in, 6) if result.rows_in else None,
            "problems": found}
        if table == "catalog":
            flags, entry["flags"] = injection_flags(result.valid, config.flag_examples)
            write_csv_atomic(flags, out_dir / "flags" / "catalog.csv")
            if len(flags):
                logger.warning("validate catalog: %d products have text that reads as "
                               "instructions to a model "
                               "(kept verbatim; see %s)", entry["flags"]["products"],
                               out_dir / "flags" / "catalog.csv")
        logger.log(logging.WARNING if found else logging.INFO,
                   "validate %-10s %6d in  %6d valid  %6d rejected%s%s",
                   table, result.rows_in, len(result.valid), len(result.rejects),
                   "".join(f"  <- {'EMPTY: ' if p.startswith('no ') else ''}{p}" for p in found),
                   "".join(f"\n    {n:6d}  {reason}" for reason, n in result.summary()["reasons"].items()))
    summary["problems"], summary["passed"] = problems, not problems
    write_json_atomic(summary, out_dir / "validation.json")
    if config.strict and problems:
        raise ValidationFailed(f"validate (strict) failed: {'; '.join(problems)} (report: "
                               f"{out_dir / 'validation.json'})", summary)
    return summary
