import datetime as dt

import pandas as pd
import pytest

from relsum.data.sql import run_sql, sql_text

PARAMS_ALL = ["0001-01-01", "9999-12-31", True]


def _tables():
    log = pd.DataFrame({
        "query_id": ["q1", "q1", "q1", "q2", "q2", "q3"],
        "query": ["usb cable"] * 3 + ["red mouse"] * 2 + ["x'); DROP TABLE catalog; --"],
        "product_id": ["p1", "p1", "p2", "p2", "p9", "p1"],
        "label": [1.0, 0.5, None, None, None, None],
        "traffic": [3, 2, None, 5, 1, 1],
        "event_date": [dt.date(2026, 10, 1), dt.date(2026, 10, 20), dt.date(2026, 10, 2), None,
                       dt.date(2026, 10, 3), dt.date(2026, 10, 4)],
    })
    catalog = pd.DataFrame({"product_id": ["p1", "p2"], "title": ["Cable", "Mouse"],
                            "text": ["usb 2m", "red"], "content_hash": ["h1", "h2"]})
    return {"search_log": log, "catalog": catalog}


def test_dedupes_and_joins():
    pairs = run_sql("extract_pairs", _tables(), PARAMS_ALL)
    assert list(zip(pairs.query_id, pairs.product_id,
                    strict=True)) == [("q1", "p1"), ("q1", "p2"), ("q2", "p2"), ("q3", "p1")]
    first = pairs.iloc[0]
    assert first.label == pytest.approx(0.75) and first.n_labels == 2 and first.n_events == 2
    assert first.traffic == 5 and first.title == "Cable"
    assert pd.isna(pairs.iloc[1].label) and pairs.iloc[1].traffic == 1  # missing traffic counts as 1


def test_date_range_and_undated_rows():
    pairs = run_sql("extract_pairs", _tables(), ["2026-10-02", "2026-10-20", False])
    assert list(zip(pairs.query_id, pairs.product_id, strict=True)) == [("q1", "p2"), ("q3", "p1")]
    pairs = run_sql("extract_pairs", _tables(), ["2026-10-02", "2026-10-20", True])
    assert ("q2", "p2") in set(zip(pairs.query_id, pairs.product_id, strict=True))


def test_query_text_is_data_not_sql():
    tables = _tables()
    pairs = run_sql("extract_pairs", tables, PARAMS_ALL)
    assert "x'); DROP TABLE catalog; --" in set(pairs["query"])
    assert len(run_sql("extract_pairs", tables, PARAMS_ALL)) == len(pairs)


def test_unmatched_pairs_are_reported():
    unmatched = run_sql("count_unmatched_pairs", _tables(), PARAMS_ALL)
    assert unmatched[["query_id", "product_id"]].values.tolist() == [["q2", "p9"]]


def test_sql_is_parameterised_not_formatted():
    text = sql_text("extract_pairs")
    assert text.count("?") == 3 and "{" not in text and "%s" not in text
    with pytest.raises(FileNotFoundError):
        sql_text("nope")
