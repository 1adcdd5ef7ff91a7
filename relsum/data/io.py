"""Reading input tables from files or DuckDB, and writing outputs atomically.

``read_table(source)`` is the one entry point every stage uses to read its inputs:

- ``*.csv``: every column as text (``dtype=str``); only empty cells are missing, so ``"0012"`` and ``"NA"``
  stay text
- ``*.jsonl`` / ``*.ndjson``: one JSON object per line, values as JSON typed them (strings stay strings)
- ``*.parquet``: the stored types
- ``duckdb:<db path>:<table>``: the table (``schema.table`` allowed), read-only connection
- ``duckdb:<db path>:SELECT ...``: the result of exactly one read-only query (``SELECT``, ``WITH``, ``FROM
  t``), read-only connection

Text files are decoded as UTF-8 with undecodable bytes replaced by U+FFFD rather than raising, so one
bad byte costs one row (the contract rejects it as ``undecodable text``), not the whole read. A JSONL
line that is not a JSON object, and a CSV record with fewer or more fields than the header, becomes a
row whose ``_read_error`` column says why (a short CSV row is never padded into an empty description, a
long one never shifts into the index); the contracts reject such rows, so no line is silently lost.
A JSONL object that names one key twice (``json`` keeps only the last value) and one with a lone
surrogate escape (``"\\ud800"``: valid JSON, not valid Unicode, and no string column can hold it) are
such rows too; the surrogate is replaced by U+FFFD so the rest of the file still reads.

A table whose columns repeat a name (a CSV header ``product_id,title,title``, a Parquet schema or a
DuckDB ``SELECT a AS x, b AS x``) is refused: one of the two would be read as the column and the other
silently ignored or renamed. A Parquet file that cannot be opened (truncated, empty, not Parquet) is
a :class:`TableReadError` naming the file, not a library traceback.

A DuckDB source is a user-supplied statement run on the user's database file, so it is held to one
statement that only reads: DuckDB's own parser (``duckdb.extract_statements``) splits it, and anything
but a single ``SELECT`` (a second statement after ``;``, ``COPY``, ``INSTALL``/``LOAD``, ``ATTACH``,
``SET``, ``PRAGMA``, ``CALL``...) is refused before the database is opened. The connection is opened
read-only with external access off and the configuration locked (:func:`relsum.data.sql.connect`), so
a ``SELECT`` cannot read other files (``read_csv('/etc/passwd')``), download or load extensions. The
DuckDB path may not contain ``:``.

Writers go through :func:`atomic_path`: the file is written beside its target under a temporary name
and moved into place with ``os.replace``, so a crash never leaves a half-written output that a later
stage would read as complete.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from relsum.core.errors import InputError
from relsum.data.jsonl import parse_line
from relsum.data.sql import connect

logger = logging.getLogger(__name__)

READ_ERROR_COL = "_read_error"
TEXT_SUFFIXES = {".csv", ".jsonl", ".ndjson"}
CSV_FIELD_LIMIT = 1 << 30  # Python's csv module stops at 128 KiB per field; pandas had no such limit
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*){0,2}$")


class TableReadError(InputError):
    """A source that cannot be read at all: unknown format, missing file, bad or refused DuckDB spec."""


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
        df = _read_parquet(path)
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
        logger.warning("%s: undecodable UTF-8 bytes were replaced by U+FFFD; those "
                       "rows will be rejected", path)
    return text


def refuse_duplicate_columns(source: str | Path, names: list[Any]) -> None:
    """:class:`TableReadError` when two columns share a name (blanks around a name do not count; blank
    names, which a CSV reader numbers ``Unnamed: <i>``, are not compared).

    Why refuse rather than rename (``title``, ``title.1``): the contract would read the first as the
    column and pass the second through as an unused extra, so half of what the user meant is dropped
    without a word, and which half depends on the column order.
    """
    seen: dict[str, int] = {}
    repeats: list[str] = []
    for i, name in enumerate(names, start=1):
        key = str(name).strip()
        if not key:
            continue
        if key in seen:
            repeats.append(f"{key!r} (columns {seen[key]} and {i})")
        else:
            seen[key] = i
    if repeats:
        raise TableReadError(f"{source}: duplicate column name {', '.join(repeats[:5])}"
                             f"{', ...' if len(repeats) > 5 else ''}; rename or remove the repeated "
                             "column, since only one of them could be read")


def _header_names(cells: list[str]) -> list[str]:
    """Column names as pandas gives them: blank -> ``Unnamed: <i>`` (a repeated name was refused)."""
    names: list[str] = []
    for i, cell in enumerate(cells):
        name = cell if cell.strip() else f"Unnamed: {i}"
        base, k = name, 0
        while name in names:
            k += 1
            name = f"{base}.{k}"
        names.append(name)
    return names


def _read_csv(path: Path) -> pd.DataFrame:
    """Every cell as text, empty cells missing; a record whose field count differs from the header's
    is kept as a row with a ``_read_error`` (values as far as they go), never padded or shifted."""
    text = _decode(path)
    if not text.strip():
        raise TableReadError(f"{path}: empty CSV file (no header)")
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    # bad quoting: a table error, as in pandas
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(r for r in reader if r)
        refuse_duplicate_columns(path, header)
        names = _header_names(header)
        columns: list[list[str | None]] = [[] for _ in names]
        errors: list[str | None] = []
        start = reader.line_num + 1
        for record in reader:
            line, start = start, reader.line_num + 1
            if not record:  # a blank line, as pandas skips it
                continue
            if len(record) != len(names):
                kind = ("short row, not padded" if len(record) < len(names)
                        else "long row, extra " + ", ".join(repr(v) for v in record[len(names):])[:120])
                errors.append(f"line {line}: {len(record)} fields where the header has {len(names)} ({kind})")
            else:
                errors.append(None)
            for j, col in enumerate(columns):
                col.append(record[j] if j < len(record) and record[j] != "" else None)
    except csv.Error as exc:
        raise TableReadError(f"{path}: malformed CSV (line {reader.line_num}: {exc})") from exc
    df = pd.DataFrame({name: pd.Series(col, dtype="str") for name, col in zip(names, columns, strict=True)},
                      index=pd.RangeIndex(len(errors)))
    if any(e is not None for e in errors):
        df[READ_ERROR_COL] = pd.Series(errors, dtype=object)
        logger.warning("%s: %d rows have a field count other than the header's; they will be rejected",
                       path, sum(e is not None for e in errors))
    return df


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        refuse_duplicate_columns(path, pq.read_schema(path).names)
        return pd.read_parquet(path)
    except pa.ArrowException as exc:  # truncated, empty or not Parquet; OSErrors (permissions) pass
        raise TableReadError(f"{path}: not a readable Parquet file ({exc}); it may be truncated or "
                             "damaged: write it again or restore it") from exc


def _read_jsonl(path: Path) -> pd.DataFrame:
    records: list[dict[str, Any]] = []
    for lineno, line in enumerate(_decode(path).splitlines(), start=1):
        if line.strip():
            obj, problem = parse_line(line)
            if problem:
                obj[READ_ERROR_COL] = f"line {lineno}: {problem}"
            records.append(obj)
    return pd.DataFrame.from_records(records)


def duckdb_select(target: str, source: str = "") -> str:
    """The one read-only SQL statement of a DuckDB source's ``<table or query>`` part.

    A table name (``t``, ``schema.t``) becomes a quoted ``SELECT *``; anything else must parse, with
    DuckDB's own parser, into exactly one statement of type SELECT, else :class:`TableReadError`.
    """
    import duckdb

    where = source or target
    target = target.strip()
    if _IDENT.match(target):
        return "SELECT * FROM " + ".".join(f'"{part}"' for part in target.split("."))
    try:
        statements = duckdb.extract_statements(target)
    except duckdb.Error as exc:
        raise TableReadError(f"{where}: {target!r} is neither a table name nor a "
                             f"SELECT query ({exc})") from exc
    if len(statements) != 1:
        raise TableReadError(f"{where}: expected one SELECT query or a table name, got {len(statements)} "
                             "statements; only one read-only statement is run")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise TableReadError(f"{where}: only a SELECT query or a table name is accepted, got a statement of "
                             f"type {kind.name}")
    return statements[0].query


def _read_duckdb(source: str) -> pd.DataFrame:
    import duckdb

    rest = source[len("duckdb:"):]
    if ":" not in rest:
        raise TableReadError(f"{source}: expected duckdb:<db path>:<table name or SELECT query>")
    db_path, target = rest.split(":", 1)
    sql = duckdb_select(target, source)
    if not Path(db_path).is_file():
        raise TableReadError(f"{source}: DuckDB file {db_path!r} not found")
    try:
        with connect(db_path, read_only=True) as con:
            result = con.execute(sql)
            refuse_duplicate_columns(source, [d[0] for d in result.description or []])
            return result.df()
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


def write_text_atomic(text: str, path: str | Path) -> Path:
    """``text`` as UTF-8 at ``path``, atomically (:func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(obj: Any, path: str | Path) -> Path:
    return write_text_atomic(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", path)
