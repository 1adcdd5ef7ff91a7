"""Hostile data input (issue 23, cases 6, 7, 18): repeated column names in every table format, a golden
folder with two catalogs, a JSONL row with a lone surrogate escape, a truncated Parquet file."""

from __future__ import annotations

import json
import logging

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from relsum.cli import main
from relsum.data.contracts import ContractError, validate_catalog
from relsum.data.golden import find_catalog, load_golden
from relsum.data.io import TableReadError, read_table, write_csv_atomic

GOOD = {"product_id": "p1", "title": "Cordless drill", "description": "18 V"}


@pytest.mark.parametrize("header", ["product_id,title,title,description",
                                    "product_id, title,title ,description"])
def test_csv_repeated_column_is_refused(tmp_path, header):
    """Old code read ``title`` and ``title.1``: the second title passed validation as an unused extra."""
    (tmp_path / "c.csv").write_text(f"{header}\np1,Drill,Hammer,18 V\n")
    with pytest.raises(TableReadError, match=r"c\.csv: duplicate column name 'title' \(columns 2 and 3\)"):
        read_table(tmp_path / "c.csv")


def test_csv_repeated_column_cli_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "c.csv").write_text("product_id,title,title,description\np1,Drill,Hammer,18 V\n")
    assert main(["validate", "--catalog", str(tmp_path / "c.csv"), "--out", str(tmp_path / "out")]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "duplicate column name 'title'" in lines[0], lines


def test_parquet_and_duckdb_repeated_columns_are_refused(tmp_path):
    table = pa.table([pa.array(["p1"]), pa.array(["Drill"]), pa.array(["Hammer"]), pa.array(["18 V"])],
                     names=["product_id", "title", "title", "description"])
    pq.write_table(table, tmp_path / "c.parquet")
    # old: an ArrowInvalid traceback
    with pytest.raises(TableReadError, match="duplicate column name 'title'"):
        read_table(tmp_path / "c.parquet")
    with duckdb.connect(str(tmp_path / "db.duckdb")) as con:
        con.execute("CREATE TABLE t AS SELECT 'p1' AS product_id, 'Drill' AS title, '18 V' AS description")
    # old: DuckDB's DataFrame renamed the second to title_1, which the contract passed through unread
    with pytest.raises(TableReadError, match=r"duplicate column name 'title' \(columns 2 and 3\)"):
        read_table(f"duckdb:{tmp_path / 'db.duckdb'}:SELECT product_id, title, description AS title FROM t")
    assert read_table(f"duckdb:{tmp_path / 'db.duckdb'}:t")["title"].tolist() == ["Drill"]


def test_jsonl_repeated_key_rejects_that_row(tmp_path):
    """Old code kept the last ``title`` silently; now the row is rejected with its reason, others kept."""
    lines = [json.dumps(GOOD), '{"product_id": "p2", "title": "Drill", "title": "Hammer", "description": ""}',
             '{"product_id": "p3", "title": "Saw", "description": "", "attributes": {"v": 1, "v": 2}}']
    (tmp_path / "c.jsonl").write_text("\n".join(lines) + "\n")
    result = validate_catalog(read_table(tmp_path / "c.jsonl"))
    assert result.valid["product_id"].tolist() == ["p1"]
    assert result.rejects["reason"].tolist() == [
        "unreadable row: line 2: key 'title' given twice (JSON keeps only the last value)",
        "unreadable row: line 3: key 'v' given twice (JSON keeps only the last value)"]


def test_jsonl_lone_surrogate_rejects_that_row_only(tmp_path):
    """Old code: pandas' Arrow string column could not hold '\\ud800', so reading the file raised."""
    lines = [json.dumps(GOOD), '{"product_id": "p2", "title": "Drill \\ud800 pro", "description": "x"}',
             '{"product_id": "p3", "title": "Smile \\ud83d\\ude00", "description": "a valid pair"}']
    (tmp_path / "c.jsonl").write_text("\n".join(lines) + "\n")
    result = validate_catalog(read_table(tmp_path / "c.jsonl"))
    assert result.valid["product_id"].tolist() == ["p1", "p3"]
    assert result.valid["title"].tolist()[1] == "Smile \U0001f600"
    (reason,) = result.rejects["reason"]
    assert reason.startswith("unreadable row: line 2: lone surrogate escape (not valid Unicode) in 'title'")
    assert result.rejects["title"].tolist() == ["Drill \ufffd pro"]
    write_csv_atomic(result.rejects, tmp_path / "rejects.csv")  # the reject is writable as it stands
    assert "lone surrogate" in (tmp_path / "rejects.csv").read_text(encoding="utf-8")


def test_truncated_parquet_names_the_file(tmp_path):
    pd.DataFrame([GOOD] * 50).to_parquet(tmp_path / "c.parquet")
    data = (tmp_path / "c.parquet").read_bytes()
    (tmp_path / "c.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(TableReadError, match=r"c\.parquet: not a readable Parquet file .*truncated"):
        read_table(tmp_path / "c.parquet")


def _golden(folder, catalogs: dict[str, str]):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "queries.csv").write_text("query_id,query,tail\nq1,drill,false\n")
    (folder / "judgments.csv").write_text("query_id,product_id,grade\nq1,p1,3\n")
    for name, text in catalogs.items():
        (folder / name).write_text(text)
    return folder


CSV = "product_id,title,description\np1,From the CSV,\n"
JSONL = json.dumps({**GOOD, "title": "From the JSONL"}) + "\n"


def test_golden_folder_with_two_catalogs_is_refused(tmp_path):
    """Old code silently used products.jsonl (first in the lookup order) and ignored catalog.csv."""
    folder = _golden(tmp_path / "golden", {"catalog.csv": CSV, "products.jsonl": JSONL})
    with pytest.raises(ContractError, match=r"2 catalog files \(products\.jsonl, catalog\.csv\)"):
        load_golden(folder)
    with pytest.raises(ContractError, match="keep one catalog in the folder"):
        find_catalog(folder)
    # an explicit catalog settles it
    assert load_golden(folder, catalog=folder / "catalog.csv").catalog["title"].tolist() == ["From the CSV"]


def test_golden_names_the_catalog_it_used(tmp_path, caplog):
    """One catalog in the folder beside a shared ../products.jsonl is not ambiguous: the folder's wins,
    and the file used is logged and kept on the GoldenSet."""
    (tmp_path / "products.jsonl").write_text(JSONL)
    folder = _golden(tmp_path / "golden", {"catalog.csv": CSV})
    with caplog.at_level(logging.INFO, logger="relsum.data.golden"):
        golden = load_golden(folder)
    assert golden.catalog["title"].tolist() == ["From the CSV"]
    assert golden.catalog_source == str((folder / "catalog.csv").resolve())
    assert f"catalog {golden.catalog_source}" in caplog.text
    (folder / "catalog.csv").unlink()
    assert load_golden(folder).catalog_source == str((tmp_path / "products.jsonl").resolve())
