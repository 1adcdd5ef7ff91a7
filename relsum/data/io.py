"""Reading input tables from files or DuckDB, and writing outputs atomically.

``read_table(source)`` is the one entry point every stage uses to read its inputs:

| source | read as |
| --- | --- |
| ``*.csv`` | every column as text (``dtype=str``); only empty cells are missing, so ``"0012"`` and ``"NA"`` stay text |
| ``*.jsonl`` / ``*.ndjson`` | one JSON object per line, values as JSON typed them (strings stay strings) |
| ``*.parquet`` | the stored types |
| ``duckdb:<db path>:<table>`` | the table (``schema.table`` allowed), read-only connection |
| ``duckdb:<db path>:SELECT ...`` | the query result (``SELECT`` or ``WITH``), read-only connection |

Text files are decoded as UTF-8 with undecodable bytes replaced by U+FFFD rather than raising, so one
bad byte costs one row (the contract rejects it as ``undecodable text``), not the whole read. A JSONL
line that is not a JSON object becomes a row whose ``_read_error`` column says why; the contracts reject
such rows, so no line is silently lost. The DuckDB path may not contain ``:``.

Writers go through :func:`atomic_path`: the file is written beside its target under a temporary name
and moved into place with ``os.replace``, so a crash never leaves a half-written output that a later
stage would read as complete.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

logger = logging.getLogger(__name__)

READ_ERROR_COL = "_read_error"
TEXT_SUFFIXES = {".csv", ".jsonl", ".ndjson"}
_QUERY_START = re.compile(r"^\s*(select|with)\b", re.IGNORECASE)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*){0,2}$")


class TableReadError(ValueError):
    """A source that cannot be read at all: unknown format, missing file, bad DuckDB spec."""


def read_table(source: str | Path) -> pd.DataFrame:
    """Read a table from CSV, JSONL, Parquet or DuckDB (see the module docstring for the formats)."""
    text = str(source)
    if text.startswith("duckdb:"):
        return _read_duckdb(text)
    path = Path(text)
    suffix = path.suffix.lower()
    if suffix not in TEXT_SUFFIXES | {".parquet"}:
        raise TableReadError(
            f"{source}: unknown table format {suffix or '(no extension)'!r}; use .csv, .jsonl, .ndjson, "
            ".parquet or duckdb:<db path>:<table or SELECT query>")
    if not path.is_file():
        raise TableReadError(f"{source}: file not found")
    if suffix == ".parquet":
        df = pd.read_parquet(path)
    elif suffix == ".csv":
        df = _read_csv(path)
    else:
        df = _read_jsonl(path)
    logger.debug("read %d rows x %d columns from %s", len(df), df.shape[1], source)
    return df


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    text = raw.decode("utf-8-sig", errors="replace")
    if "\ufffd" in text and b"\xef\xbf\xbd" not in raw:
        logger.warning("%s: undecodable UTF-8 bytes were replaced by U+FFFD; those rows will be rejected", path)
    return text


def _read_csv(path: Path) -> pd.DataFrame:
    import io

    text = _decode(path)
    if not text.strip():
        raise TableReadError(f"{path}: empty CSV file (no header)")
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.ParserError as exc:
        raise TableReadError(f"{path}: malformed CSV ({exc})") from exc


def _read_jsonl(path: Path) -> pd.DataFrame:
    records: list[dict[str, Any]] = []
    for lineno, line in enumerate(_decode(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            records.append({READ_ERROR_COL: f"line {lineno}: invalid JSON ({exc.msg})"})
            continue
        if not isinstance(obj, dict):
            records.append({READ_ERROR_COL: f"line {lineno}: not a JSON object"})
            continue
        records.append(obj)
    return pd.DataFrame.from_records(records)


def _read_duckdb(source: str) -> pd.DataFrame:
    import duckdb

    rest = source[len("duckdb:"):]
    if ":" not in rest:
        raise TableReadError(f"{source}: expected duckdb:<db path>:<table name or SELECT query>")
    db_path, target = rest.split(":", 1)
    target = target.strip()
    if not Path(db_path).is_file():
        raise TableReadError(f"{source}: DuckDB file {db_path!r} not found")
    if _QUERY_START.match(target):
        sql = target
    elif _IDENT.match(target):
        sql = "SELECT * FROM " + ".".join(f'"{part}"' for part in target.split("."))
    else:
        raise TableReadError(f"{source}: {target!r} is neither a table name nor a SELECT/WITH query")
    with duckdb.connect(db_path, read_only=True) as con:
        try:
            return con.execute(sql).df()
        except duckdb.Error as exc:
            raise TableReadError(f"{source}: {exc}") from exc


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it onto ``path``, on error delete it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600 files; give the output the usual umask-based mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_parquet_atomic(df: pd.DataFrame, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)


def write_csv_atomic(df: pd.DataFrame, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, encoding="utf-8", errors="backslashreplace")
    return Path(path)


def write_json_atomic(obj: Any, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    return Path(path)
