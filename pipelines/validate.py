"""Stage ``validate``: check every input table against its contract before anything trains on it.

Outputs under ``out_dir``:

| path | contents |
| --- | --- |
| ``clean/<table>.parquet`` | the valid, cleaned rows of each table given |
| ``rejects/<table>.csv`` | rejected rows (original values + ``row_number`` + ``reason``), always written, header-only when none |
| ``validation.json`` | per table: source, rows in, valid, rejected, counts by reason kind |

Judgments are checked against the validated queries and catalog, and the search log against the
catalog, so a pair pointing at a rejected product is itself rejected rather than silently orphaned.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from relsum.config import cfg, to_dict
from relsum.data.contracts import (
    ContractConfig,
    ValidationResult,
    validate_catalog,
    validate_judgments,
    validate_queries,
    validate_search_log,
)
from relsum.data.golden import find_grade_map
from relsum.data.io import read_table, write_csv_atomic, write_json_atomic, write_parquet_atomic
from relsum.paths import home

logger = logging.getLogger(__name__)

TABLES = ("catalog", "search_log", "queries", "judgments")


@dataclasses.dataclass
class ValidateConfig:
    """Which tables to validate and where the cleaned tables, rejects and report go."""

    catalog: str | None = cfg(None, help="catalog source (csv/jsonl/parquet path or duckdb:<db>:<table|query>)")
    search_log: str | None = cfg(None, help="search-log pairs source, same formats")
    queries: str | None = cfg(None, help="golden queries source, same formats")
    judgments: str | None = cfg(None, help="golden judgments source, same formats")
    out_dir: str | None = cfg(None, help="output folder; default <relsum home>/validate")
    contract: ContractConfig = cfg(default_factory=ContractConfig, help="contract settings")
    grade_map_from_folder: bool = cfg(True, help="use the grade_map of a relsum.yaml beside the judgments "
                                      "file (or in its parent folder), as load_golden does")

    def __post_init__(self) -> None:
        if not any(getattr(self, t) for t in TABLES):
            raise ValueError(f"give at least one table to validate: {', '.join(TABLES)}")
        if self.out_dir is None:
            self.out_dir = str(home() / "validate")


def _storable(df: pd.DataFrame) -> pd.DataFrame:
    """Nested values (dicts, lists) as JSON text, so mixed columns write to Parquet and CSV alike."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object and out[col].map(lambda v: isinstance(v, dict | list | tuple)).any():
            out[col] = out[col].map(
                lambda v: json.dumps(v, ensure_ascii=False, default=str) if isinstance(v, dict | list | tuple) else v)
    return out


def run(config: ValidateConfig) -> dict[str, Any]:
    """Validate the tables given, write clean tables, rejects and ``validation.json``; return the summary."""
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
    for table, result in results.items():
        write_parquet_atomic(_storable(result.valid), out_dir / "clean" / f"{table}.parquet")
        write_csv_atomic(_storable(result.rejects), out_dir / "rejects" / f"{table}.csv")
        summary["tables"][table] = {"source": getattr(config, table), **result.summary()}
        logger.info("validate %-10s %6d in  %6d valid  %6d rejected%s", table, result.rows_in,
                    len(result.valid), len(result.rejects),
                    "".join(f"\n    {n:6d}  {reason}" for reason, n in result.summary()["reasons"].items()))
    write_json_atomic(summary, out_dir / "validation.json")
    return summary
