"""read_table from every format, undecodable bytes, ragged CSV rows, hostile DuckDB sources, atomic
writers."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from relsum.core.errors import InputError
from relsum.data.contracts import validate_catalog
from relsum.data.io import (
    READ_ERROR_COL,
    TableReadError,
    atomic_path,
    read_table,
    write_csv_atomic,
    write_json_atomic,
    write_parquet_atomic,
)

FIXTURES = Path(__file__).parent / "fixtures"

ROWS = [{"product_id": "0012", "title": "Lamp", "description": "bright"},
        {"product_id": "13", "title": "NA", "description": ""}]


@pytest.fixture()
def frame():
    return pd.DataFrame(ROWS)


def _check(df: pd.DataFrame):
    assert list(df["product_id"]) == ["0012", "13"]
    assert df["title"].tolist() == ["Lamp", "NA"]


def test_csv_reads_ids_and_na_as_text(tmp_path, frame):
    frame.to_csv(tmp_path / "c.csv", index=False)
    df = read_table(tmp_path / "c.csv")
    _check(df)
    assert pd.isna(df["description"][1])  # an empty cell is missing, "NA" is text


def test_jsonl_and_ndjson(tmp_path):
    text = "\n".join(json.dumps(r) for r in ROWS) + "\n\n"
    for name in ("c.jsonl", "c.ndjson"):
        (tmp_path / name).write_text(text)
        _check(read_table(str(tmp_path / name)))


def test_parquet(tmp_path, frame):
    frame.to_parquet(tmp_path / "c.parquet")
    _check(read_table(tmp_path / "c.parquet"))


def test_duckdb_table_and_query(tmp_path, frame):
    db = tmp_path / "cat.duckdb"
    with duckdb.connect(str(db)) as con:
        con.register("frame", frame)
        con.execute("CREATE TABLE products AS SELECT * FROM frame")
        con.execute("CREATE SCHEMA shop")
        con.execute("CREATE TABLE shop.items AS SELECT * FROM frame")
    _check(read_table(f"duckdb:{db}:products"))
    _check(read_table(f"duckdb:{db}:shop.items"))
    df = read_table(f"duckdb:{db}:SELECT product_id, title FROM products WHERE title <> "
                    f"'x' ORDER BY product_id")
    _check(df)
    assert list(df.columns) == ["product_id", "title"]
    with pytest.raises(TableReadError, match="nosuch"):
        read_table(f"duckdb:{db}:nosuch")
    with pytest.raises(TableReadError, match="type DROP"):
        read_table(f"duckdb:{db}:drop table products")
    with pytest.raises(TableReadError, match="not found"):
        read_table(f"duckdb:{tmp_path / 'missing.duckdb'}:products")


def test_unknown_format_and_missing_file(tmp_path):
    (tmp_path / "c.xlsx").write_text("x")
    with pytest.raises(TableReadError, match="unknown table format"):
        read_table(tmp_path / "c.xlsx")
    with pytest.raises(TableReadError, match="file not found"):
        read_table(tmp_path / "nope.csv")
    with pytest.raises(TableReadError, match="expected duckdb"):
        read_table("duckdb:only-a-path")


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_undecodable_bytes_reject_only_that_row(tmp_path, suffix):
    path = tmp_path / f"c.{suffix}"
    if suffix == "csv":
        body = b"product_id,title,description\np1,Lamp,fine\np2,Bad \xff\xfe bytes,x\np3,Desk,\xc3(\n"
    else:
        body = (b'{"product_id": "p1", "title": "Lamp", "description": "fine"}\n'
                b'{"product_id": "p2", "title": "Bad \xff\xfe bytes", "description": "x"}\n'
                b'{"product_id": "p3", "title": "Desk", "description": "\xc3("}\n')
    path.write_bytes(body)
    res = validate_catalog(read_table(path))
    assert res.valid["product_id"].tolist() == ["p1"]
    assert res.rejects["reason"].tolist() == ["undecodable text: title", "undecodable text: description"]


def test_invalid_json_line_becomes_rejected_row(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"product_id": "p1", "title": "Lamp", "description": ""}\n{not json\n[1, 2]\n')
    res = validate_catalog(read_table(path))
    assert len(res.valid) == 1 and len(res.rejects) == 2
    assert res.rejects["reason"].str.startswith("unreadable row: line 2: invalid JSON").iloc[0]
    assert "line 3: not a JSON object" in res.rejects["reason"].iloc[1]


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("one")
        assert not target.exists() and tmp.parent == target.parent
    assert target.read_text() == "one"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "one"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]


def test_writers_round_trip(tmp_path, frame):
    _check(read_table(write_parquet_atomic(frame, tmp_path / "a.parquet")))
    _check(read_table(write_csv_atomic(frame, tmp_path / "a.csv")))
    write_json_atomic({"n": 2, "é": [1.5]}, tmp_path / "a.json")
    assert json.loads((tmp_path / "a.json").read_text(encoding="utf-8")) == {"n": 2, "é": [1.5]}


def test_bad_quoting_is_a_table_error(tmp_path):
    (tmp_path / "c.csv").write_text('product_id,title\np1,"unterminated\np2,Desk\n')
    with pytest.raises(TableReadError, match="malformed CSV") as err:
        read_table(tmp_path / "c.csv")
    assert isinstance(err.value, InputError)  # the CLI prints one line, exit 2


def test_ragged_csv_rows_are_rejected_never_padded_or_shifted():
    df = read_table(FIXTURES / "catalog_ragged.csv")
    assert list(df.columns) == ["expect", "product_id", "title", "description", READ_ERROR_COL]
    assert df["product_id"].tolist() == ["r1", "r2", "r3", "r4", "r5", "r6", "r7"]  # blank line skipped
    res = validate_catalog(df.drop(columns=["expect"]))
    assert len(res.valid) + len(res.rejects) == len(df)
    rejected = res.rejects.set_index("row_number")["reason"]
    for i, expect in enumerate(df["expect"]):
        if isinstance(expect, str):
            assert rejected[i].startswith(expect), (i, rejected.get(i))
        else:
            assert i not in rejected.index, rejected[i]
    assert rejected[1] == "unreadable row: line 3: 3 fields where the header has 4 (short row, not padded)"
    assert rejected[2].startswith("unreadable row: line 4: 5 fields where the header has 4 "
                                  "(long row, extra 'extra")
    # physical line numbers: the quoted newline of r4 and the blank line count
    assert "line 7: 2 fields" in rejected[4] and "line 10: 6 fields" in rejected[6]
    assert res.valid.set_index("product_id").loc["r4", "description"] == "two lines"
    # the short row's values are kept as far as they go, for the rejects file
    assert res.rejects.set_index("row_number").loc[1, "title"] == "Only a title"


def test_csv_header_names_follow_pandas(tmp_path):
    (tmp_path / "c.csv").write_text(",a,b,\n0,1,2,3\n")
    assert list(read_table(tmp_path / "c.csv").columns) == ["Unnamed: 0", "a", "b", "Unnamed: 3"]
    # a repeated name is refused (tests/data/test_hostile_round2.py), no longer renamed to "a.1"
    (tmp_path / "c.csv").write_text(",a,a,b\n0,1,2,3\n")
    with pytest.raises(TableReadError, match=r"duplicate column name 'a' \(columns 2 and 3\)"):
        read_table(tmp_path / "c.csv")


def _duckdb_cases():
    for line in (FIXTURES / "duckdb_sources.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            expect, target = line.split("\t")
            yield pytest.param(expect, target, id=target[:50])


@pytest.fixture(scope="module")
def hostile_db(tmp_path_factory):
    folder = tmp_path_factory.mktemp("duck")
    with duckdb.connect(str(folder / "cat.duckdb")) as con:
        con.register("frame", pd.DataFrame(ROWS))
        con.execute("CREATE TABLE products AS SELECT * FROM frame")
    with duckdb.connect(str(folder / "other.duckdb")) as con:
        con.execute("CREATE TABLE secrets AS SELECT 'x' AS s")
    (folder / "secret.csv").write_text("s\ntop secret\n")
    return folder


@pytest.mark.parametrize(("expect", "target"), list(_duckdb_cases()))
def test_hostile_duckdb_sources(hostile_db, expect, target):
    """One read-only SELECT or a table name; nothing else runs, nothing is written or downloaded."""
    source = f"duckdb:{hostile_db / 'cat.duckdb'}:" + target.replace("{dir}", str(hostile_db))
    before = sorted(p.name for p in hostile_db.iterdir())
    if expect == "ok":
        assert "product_id" in read_table(source).columns
    else:
        with pytest.raises(TableReadError, match=expect):
            read_table(source)
    assert sorted(p.name for p in hostile_db.iterdir()) == before  # no leak.csv, no dump/, no .wal


def test_csv_writer_survives_surrogates(tmp_path):
    frame = pd.DataFrame({"product_id": ["p1"], "title": ["bad \udcff byte"]}, dtype=object)
    df = read_table(write_csv_atomic(frame, tmp_path / "r.csv"))
    assert df["title"][0] == "bad \\udcff byte"
