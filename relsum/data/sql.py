"""Run the shipped SQL files on DuckDB (the embedded default) with bound parameters.

The SQL text lives in ``sql/`` (installed as ``relsum.sql``) and is never formatted with values:
every value is bound as a parameter, so seller text and user input cannot change a query.
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any

import pandas as pd

logger = logging.getLogger(__name__)


def sql_text(name: str) -> str:
    """The text of a shipped SQL file, e.g. ``sql_text("extract_pairs")``."""
    path = resources.files("relsum.sql").joinpath(f"{name}.sql")
    if not path.is_file():
        raise FileNotFoundError(f"no shipped SQL file named {name}.sql")
    return path.read_text(encoding="utf-8")


def run_sql(name: str, tables: dict[str, pd.DataFrame], params: list[Any] | None = None,
            database: str = ":memory:") -> pd.DataFrame:
    """Run shipped SQL ``name`` on DuckDB over ``tables`` (registered as views) with ``params``."""
    import duckdb

    con = duckdb.connect(database)
    try:
        for table, frame in tables.items():
            con.register(table, frame)
        result = con.execute(sql_text(name), params or []).df()
    finally:
        con.close()
    logger.debug("sql %s returned %d rows", name, len(result))
    return result
