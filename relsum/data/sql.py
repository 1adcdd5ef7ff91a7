"""Run the shipped SQL files on DuckDB (the embedded default) with bound parameters.

The SQL text lives in ``sql/`` (installed as ``relsum.sql``) and is never formatted with values:
every value is bound as a parameter, so seller text and user input cannot change a query.

Every DuckDB connection relsum opens goes through :func:`connect`, which turns off DuckDB's external
access (no file readers such as ``read_csv('/etc/passwd')``, no ``COPY``, no ``ATTACH`` of other files,
no extension install or autoload, no network) and locks the configuration so a statement cannot turn
it back on. The database file named at connect time is still opened; registered DataFrames still work.
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any

import pandas as pd

logger = logging.getLogger(__name__)

LOCKED_DOWN = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "lock_configuration": True,
}


def connect(database: str = ":memory:", read_only: bool = False):
    """A DuckDB connection with external access, extension loading and later ``SET``s turned off."""
    import duckdb

    return duckdb.connect(database, read_only=read_only, config=dict(LOCKED_DOWN))


def sql_text(name: str) -> str:
    """The text of a shipped SQL file, e.g. ``sql_text("extract_pairs")``."""
    path = resources.files("relsum.sql").joinpath(f"{name}.sql")
    if not path.is_file():
        raise FileNotFoundError(f"no shipped SQL file named {name}.sql")
    return path.read_text(encoding="utf-8")


def run_sql(name: str, tables: dict[str, pd.DataFrame], params: list[Any] | None = None,
            database: str = ":memory:") -> pd.DataFrame:
    """Run shipped SQL ``name`` on DuckDB over ``tables`` (registered as views) with ``params``."""
    con = connect(database)
    try:
        for table, frame in tables.items():
            con.register(table, frame)
        result = con.execute(sql_text(name), params or []).df()
    finally:
        con.close()
    logger.debug("sql %s returned %d rows", name, len(result))
    return result
