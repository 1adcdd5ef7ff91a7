"""Contracts: one bad-row case per reason, the row-count invariant, clean catalog columns, grades, tail."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from relsum.core.config import ConfigError, load_config
from relsum.data.config import ContractConfig
from relsum.data.contracts import (
    ContractError,
    validate_catalog,
    validate_judgments,
    validate_queries,
    validate_search_log,
)
from relsum.data.golden import SAMPLE_GRADE_MAP
from relsum.data.io import read_table

FIXTURES = Path(__file__).parent / "fixtures"
KNOWN_PRODUCTS = {"p1", "p8", "0012"}
KNOWN_QUERIES = {"q1", "q2"}


def _validate(table: str, df: pd.DataFrame):
    if table == "catalog":
        return validate_catalog(df)
    if table == "search_log":
        return validate_search_log(df, known_products=KNOWN_PRODUCTS)
    if table == "queries":
        return validate_queries(df)
    return validate_judgments(df, ContractConfig(grade_map=SAMPLE_GRADE_MAP),
                              known_queries=KNOWN_QUERIES, known_products=KNOWN_PRODUCTS)


def _cases():
    for table in ("catalog", "search_log", "queries", "judgments"):
        df = read_table(FIXTURES / f"{table}_bad.csv")
        for i, expect in enumerate(df["expect"]):
            label = expect if isinstance(expect, str) else "valid"
            yield pytest.param(table, i, expect if isinstance(expect, str) else None,
                               id=f"{table}-{i}-{label}")


@pytest.fixture(scope="module")
def corpus_results():
    out = {}
    for table in ("catalog", "search_log", "queries", "judgments"):
        df = read_table(FIXTURES / f"{table}_bad.csv")
        out[table] = (df, _validate(table, df.drop(columns=["expect"])))
    return out


@pytest.mark.parametrize(("table", "row", "expect"), list(_cases()))
def test_bad_row_corpus(corpus_results, table, row, expect):
    df, result = corpus_results[table]
    assert len(result.valid) + len(result.rejects) == len(df)
    rejected = result.rejects.set_index("row_number")
    if expect is None:
        assert row not in rejected.index, rejected.loc[row, "reason"] if row in rejected.index else ""
    else:
        assert row in rejected.index, f"row {row} should be rejected for {expect!r}"
        reason = rejected.loc[row, "reason"]
        assert reason.startswith(expect) or f"; {expect}" in reason, reason
        assert result.summary()["reasons"][expect] >= 1


def test_rejects_keep_original_values(corpus_results):
    df, result = corpus_results["catalog"]
    dup = result.rejects[result.rejects["reason"].str.startswith("duplicate key")].iloc[0]
    assert dup["title"] == "Second p1" and dup["row_number"] == 2
    assert "first at row 0" in dup["reason"]
    assert set(df.columns) - {"expect"} <= set(result.rejects.columns)


def test_several_problems_are_joined():
    df = pd.DataFrame({"query_id": ["q1"], "query": [""], "product_id": ["p1"], "label": ["7"]})
    reason = validate_search_log(df).rejects["reason"].iloc[0]
    assert reason.startswith("empty query; label out of range")


@pytest.mark.parametrize(("func", "df", "missing"), [
    (validate_catalog, pd.DataFrame({"product_id": ["p"], "title": ["t"]}), ["description"]),
    (validate_search_log, pd.DataFrame({"query": ["x"]}), ["query_id", "product_id"]),
    (validate_queries, pd.DataFrame({"query_id": ["q"], "tail": [True]}), ["query"]),
    (validate_judgments, pd.DataFrame({"query_id": ["q"], "product_id": ["p"]}), ["grade"]),
])
def test_missing_column_is_table_error(func, df, missing):
    with pytest.raises(ContractError) as err:
        func(df)
    assert err.value.missing == missing


def _random_catalog(rng: random.Random, n: int) -> pd.DataFrame:
    pool = [None, "", "  ", "ok", "<b>x</b>", "bad \ufffd", "p1", "p2", "0012", 12, 3.0, float("nan")]
    return pd.DataFrame({c: [rng.choice(pool) for _ in range(n)] for c in
                         ("product_id", "title", "description", "features")}, dtype=object)


@pytest.mark.parametrize("seed", range(5))
def test_row_count_invariant_randomized(seed):
    rng = random.Random(seed)
    n = rng.randint(0, 60)
    cat = validate_catalog(_random_catalog(rng, n))
    assert len(cat.valid) + len(cat.rejects) == n
    assert sorted(cat.rejects["row_number"].tolist()) == cat.rejects["row_number"].tolist()
    assert cat.valid["product_id"].is_unique
    pool = [None, "", "q1", "q2", "p1", "-1", "0.5", "2", "x", "2024-02-30", "2024-02-03", 1, 0.25]
    log = pd.DataFrame({c: [rng.choice(pool) for _ in range(n)] for c in
                        ("query_id", "query", "product_id", "label", "traffic", "event_date")}, dtype=object)
    res = validate_search_log(log, known_products=set(cat.valid["product_id"]))
    assert len(res.valid) + len(res.rejects) == n
    assert res.valid["label"].dropna().between(0, 1).all() and (res.valid["traffic"].dropna() >= 0).all()
    judg = pd.DataFrame({c: [rng.choice(pool) for _ in range(n)]
                         for c in ("query_id", "product_id", "grade")})
    res = validate_judgments(judg, ContractConfig(grade_map=SAMPLE_GRADE_MAP))
    assert len(res.valid) + len(res.rejects) == n
    assert not res.valid.duplicated(["query_id", "product_id"]).any()


def test_catalog_clean_columns_and_text():
    df = pd.DataFrame({
        "product_id": [" p1 ", 7, "p3"],
        "title": ["<h1>Phone&nbsp;X</h1>", "Cable", "Lamp"],
        "description": ["Great <i>phone</i>\u200b", None, "bright"],
        "attributes": [{"colour": "red", "weight": "2 kg"}, '{"length": "1 m"}', None],
        "features": ["ignored: yes", "also ignored", "power: 5 W"],
        "brand": ["Acme", "Bolt", "Cora"],
    })
    res = validate_catalog(df)
    assert res.rejects.empty
    v = res.valid
    assert list(v.columns[:8]) == ["product_id", "title", "description_raw", "description", "attributes_raw",
                                   "attributes", "text", "content_hash"]
    assert list(v["product_id"]) == ["p1", "7", "p3"] and list(v["brand"]) == ["Acme", "Bolt", "Cora"]
    assert "features" not in v.columns
    assert list(v["title"]) == ["Phone X", "Cable", "Lamp"]
    assert v["description_raw"][0] == "Great <i>phone</i>\u200b" and v["description"][0] == "Great phone"
    assert list(v["attributes"]) == ["colour: red | weight: 2 kg", "length: 1 m", "power: 5 W"]
    assert list(v["text"]) == ["Great phone | "
                               "colour: red | weight: 2 kg", "length: 1 m", "bright | power: 5 W"]
    assert v["content_hash"].str.fullmatch(r"[0-9a-f]{64}").all() and v["content_hash"].is_unique


def test_catalog_caps_and_hash_tracks_content():
    cfg_ = ContractConfig(max_title_tokens=3, max_text_tokens=5)
    df = pd.DataFrame({"product_id": ["a", "b"], "title": ["one two three four", "one two three four"],
                       "description": ["d1 d2 d3", "d1 d2 d3 "], "features": ["f1 f2 f3", "f1 f2 X"]})
    v = validate_catalog(df, cfg_).valid
    assert v["title"][0] == "one two three"
    assert v["text"][0] == "d1 d2 d3 | f1"
    assert v["content_hash"][0] != v["content_hash"][1]
    same = validate_catalog(df.iloc[[0, 0]].assign(product_id=["a", "c"]), cfg_).valid
    assert same["content_hash"][0] == same["content_hash"][1]


@pytest.mark.parametrize(("grade_map", "grades", "labels"), [
    (None, ["4", "3", "2", "1", "0", 4, 3.0], [1.0, 0.5, 0.0, 0.0, 0.0, 1.0, 0.5]),
    (SAMPLE_GRADE_MAP, ["3", "2", "1", "0"], [1.0, 0.5, 0.0, 0.0]),
    (SAMPLE_GRADE_MAP, ["Exact", "Partial", "Irrelevant", " partial "], [1.0, 0.5, 0.0, 0.5]),
])
def test_grade_maps(grade_map, grades, labels):
    config = ContractConfig() if grade_map is None else ContractConfig(grade_map=grade_map)
    df = pd.DataFrame({"query_id": "q", "product_id": [f"p{i}" for i in range(len(grades))],
                       "grade": pd.Series(grades, dtype=object)})
    res = validate_judgments(df, config)
    assert res.rejects.empty
    assert res.valid["label"].tolist() == labels


def test_paper_map_rejects_sample_strings_and_default_label():
    df = pd.DataFrame({"query_id": "q", "product_id": ["a", "b"], "grade": ["Exact", "9"]})
    assert validate_judgments(df).summary()["reasons"] == {"unknown grade": 2}
    res = validate_judgments(df, ContractConfig(default_label=0.0))
    assert res.valid["label"].tolist() == [0.0, 0.0]


def test_label_column_switch(caplog):
    df = pd.DataFrame({"query_id": "q", "product_id": ["a", "b", "c", "d"], "grade": ["3", "3", "3", "3"],
                       "label": ["1.0", "0.25", "abc", None]})
    res = validate_judgments(df, ContractConfig(use_label_column=True))
    assert res.valid["label"].tolist() == [1.0, 0.25]
    assert res.rejects["reason"].tolist() == ["label not a number: 'abc'", "missing label"]
    res = validate_judgments(df.drop(columns=["grade"]), ContractConfig(grade_map=None))
    assert len(res.valid) == 2
    res = validate_judgments(df)  # paper map: grade 3 -> 0.5, label column kept aside, disagreement logged
    assert res.valid["label"].tolist() == [0.5] * 4 and "label_input" in res.valid
    assert "disagrees with grade_map" in caplog.text


def test_config_checks_and_yaml_loading(tmp_path):
    with pytest.raises(ValueError, match="grade_map labels"):
        ContractConfig(grade_map={"3": 2.0})
    with pytest.raises(ValueError, match="tail_fraction"):
        ContractConfig(tail_fraction=1.5)
    path = tmp_path / "c.yaml"
    path.write_text("grade_map:\n  3: 1.0\n  2: 0.5\nmax_text_tokens: 32\n")
    cfg_ = load_config(ContractConfig, path, ["tail_fraction=0.25"])
    assert cfg_.grade_map == {"3": 1.0,
                              "2": 0.5} and cfg_.max_text_tokens == 32 and cfg_.tail_fraction == 0.25
    with pytest.raises(ConfigError):
        load_config(ContractConfig, None, ["max_text_tokens=0"])


def test_tail_from_traffic_rarest_third_ties_by_query_id():
    df = pd.DataFrame({"query_id": [f"q{i}" for i in range(9)],
                       "query": [f"query {i}" for i in range(9)],
                       "traffic": ["50", "1", "7", "7", "7", "100", "3", "80", "90"]})
    res = validate_queries(df)
    tail = set(res.valid.loc[res.valid["tail"], "query_id"])
    assert tail == {"q1", "q6", "q2"}  # traffic 1, 3, then the first of the three 7s by query_id
    assert res.valid["tail"].dtype == bool and res.valid["traffic"].tolist()[1] == 1.0


def test_tail_from_rarity_tier_and_tail_column():
    df = pd.DataFrame({"query_id": ["a", "b", "c", "d"], "query": ["x", "y", "z", "w"],
                       "rarity_tier": ["head", "tail", "Tail", None]})
    res = validate_queries(df)
    assert res.valid["tail"].tolist() == [False, True, True]
    assert res.rejects["reason"].tolist() == ["missing rarity_tier"]
    df = pd.DataFrame({"query_id": ["a", "b", "c"], "query": ["x", "y", "z"], "tail": ["true", "0", "maybe"]})
    res = validate_queries(df)
    assert res.valid["tail"].tolist() == [True, False]
    assert res.rejects["reason"].iloc[0].startswith("tail not a boolean")


def test_queries_without_tail_source_is_contract_error():
    with pytest.raises(ContractError, match="rarity_tier"):
        validate_queries(pd.DataFrame({"query_id": ["a"], "query": ["x"]}))


def test_search_log_types():
    df = pd.DataFrame({"query_id": ["q1", "q2"], "query": ["a", "b"], "product_id": ["p", "p"],
                       "label": ["1", None], "traffic": ["3", None], "event_date": ["2024-03-01", None]})
    v = validate_search_log(df).valid
    assert np.isnan(v["label"][1]) and v["traffic"][0] == 3.0
    assert str(v["event_date"][0]) == "2024-03-01" and v["event_date"][1] is None


def test_empty_tables_and_non_finite_numbers():
    empty = pd.DataFrame({c: pd.Series([], dtype=object) for c in ("product_id", "title", "description")})
    res = validate_catalog(empty)
    assert res.valid.empty and res.rejects.empty and {"row_number", "reason"} <= set(res.rejects.columns)
    assert "content_hash" in res.valid.columns
    df = pd.DataFrame({"query_id": ["a", "b"], "query": ["x", "y"], "product_id": "p",
                       "traffic": ["inf", "nan"]})
    assert validate_search_log(df).summary()["reasons"] == {"traffic not a number": 2}


def _types_cases():
    for i, line in enumerate((FIXTURES / "catalog_types.jsonl").read_text().splitlines()):
        expect = json.loads(line)["expect"]
        yield pytest.param(i, expect, id=f"catalog_types-{i}-{expect or 'valid'}")


@pytest.fixture(scope="module")
def types_result():
    df = read_table(FIXTURES / "catalog_types.jsonl")
    return df, validate_catalog(df.drop(columns=["expect"]))


@pytest.mark.parametrize(("row", "expect"), list(_types_cases()))
def test_jsonl_types_corpus(types_result, row, expect):
    """Per column accepted types (ids: str or integral number; text: str); the rest is rejected, not
    str()-ed."""
    df, result = types_result
    assert len(result.valid) + len(result.rejects) == len(df)
    rejected = result.rejects.set_index("row_number")["reason"]
    if expect is None:
        assert row not in rejected.index, rejected.get(row)
    else:
        assert rejected[row].startswith(expect), rejected[row]


def test_types_corpus_details(types_result):
    _, result = types_result
    valid = result.valid.set_index("product_id")
    assert {"12", "14", "t1", "t10", "t14", "t15"} == set(valid.index)
    assert valid.loc["t10", "attributes"] == "colour: red | weight: 2"
    assert valid.loc["t14", "description"] == "" and valid.loc["t14", "description_raw"] == "null"
    reasons = dict(zip(result.rejects["row_number"], result.rejects["reason"], strict=True))
    assert reasons[3] == "wrong type: product_id is float 1.5"
    assert reasons[7] == "wrong type: description is float 3.5"
    assert reasons[11] == "empty title: 'None' is a null marker"
    assert reasons[12] == "missing key: product_id is 'NaN'"
    assert not any("b'" in v or v == "True" for v in result.valid["title"])


def test_parquet_bytes_and_booleans_are_rejected_not_stringified(tmp_path):
    pd.DataFrame({"product_id": ["p1", "p2", "p3"],
                  "title": pd.Series([b"bytes title", b"x", b"y"], dtype=object),
                  "description": ["ok", "ok", "ok"]}).to_parquet(tmp_path / "b.parquet")
    pd.DataFrame({"product_id": ["p1", "p2"], "title": ["Lamp", "Desk"],
                  "description": [True, False]}).to_parquet(tmp_path / "f.parquet")
    res = validate_catalog(read_table(tmp_path / "b.parquet"))
    assert res.valid.empty and res.rejects["reason"][0] == "wrong type: title is bytes b'bytes title'"
    res = validate_catalog(read_table(tmp_path / "f.parquet"))
    assert res.valid.empty and res.summary()["reasons"] == {"wrong type": 2}
    log = pd.DataFrame({"query_id": ["q1", "q2"], "query": ["a", "b"], "product_id": ["p", "p"],
                        "label": pd.Series([b"1", 0.5], dtype=object)})
    assert validate_search_log(log).rejects["reason"].tolist() == ["label not a number: b'1'"]


def _log(texts: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"query_id": "q1", "query": texts,
                         "product_id": [f"p{i}" for i in range(len(texts))]})


@pytest.mark.parametrize(("texts", "kept", "reason"), [
    # the cases: a literal NaN first, then 29 good siblings; an edited row first, then 44
    (["NaN"] + ["usb cable"] * 29, 29, "empty query: 'NaN' is a null marker"),
    (["usb cabel"] + ["usb cable"] * 44, 44, "conflicting query text: query_id 'q1' is 'usb "
                                             "cable' in 44 of 45 rows"),
    (["null", "None", "phone"], 1, "empty query: 'null' is a null marker"),
])
def test_query_text_by_majority(texts, kept, reason):
    res = validate_search_log(_log(texts))
    assert len(res.valid) == kept and set(res.valid["query"]) == {texts[-1]}
    assert res.rejects["reason"].iloc[0] == reason


def test_query_text_tie_rejects_every_row_with_a_reason():
    res = validate_search_log(_log(["usb hub", "usb-c hub", "usb hub", "usb-c hub", ""]))
    assert res.valid.empty
    assert res.rejects["reason"].tolist()[:4] == [
        "conflicting query text: query_id 'q1' has no majority text ('usb hub' x2, 'usb-c hub' x2)"] * 4
    assert res.rejects["reason"].iloc[4] == "empty query"  # not a vote


def test_table_errors_are_input_errors():
    from relsum.core.errors import InputError
    from relsum.data.io import TableReadError

    assert issubclass(ContractError, InputError) and issubclass(TableReadError, InputError)
