"""The DAGs' validate step: strict, run once per interval and inputs, fails on an empty or too-bad table."""

from __future__ import annotations

import json

import pytest

from relsum.core.paths import SAMPLE_DIR


@pytest.fixture()
def inputs(tmp_path):
    lines = (SAMPLE_DIR / "products.jsonl").read_text().splitlines()[:4]
    (tmp_path / "catalog.jsonl").write_text("\n".join(lines) + "\n")
    ids = [json.loads(line)["product_id"] for line in lines]
    rows = [f"q1,lamp,{ids[0]}", f"q1,lamp,{ids[1]}", f"q2,,{ids[2]}", f"q3,NaN,{ids[3]}"]  # 2 of 4 rejected
    (tmp_path / "log.csv").write_text("query_id,query,product_id\n" + "\n".join(rows) + "\n")
    (tmp_path / "header_only.csv").write_text("product_id,title,description\n")
    return tmp_path


def test_dag_validate_step_is_strict_and_runs_once(inputs):
    from relsum.pipelines.retrain import CATALOG, RETRAIN, load, validate_inputs
    from relsum.pipelines.validate import ValidationFailed

    base = [f"runs_dir={inputs / 'runs'}", f"pairs.catalog={inputs / 'catalog.jsonl'}",
            f"pairs.search_log={inputs / 'log.csv'}", f"summarize.catalog={inputs / 'catalog.jsonl'}"]
    out = validate_inputs(load(None, base), CATALOG, "2026-10-20")
    assert out["valid_rows"] == {"catalog": 4}
    marker = inputs / "runs" / CATALOG / "2026-10-20" / "validate" / "_SUCCESS.json"
    assert marker.is_file() and validate_inputs(load(None, base), CATALOG, "2026-10-20") == out

    with pytest.raises(ValidationFailed, match=r"search_log: reject rate 50\.00% > max_reject_rate 5\.00%"):
        validate_inputs(load(None, base), RETRAIN, "2026-10-12")  # the DAG default threshold
    assert not (inputs / "runs" / RETRAIN / "2026-10-12" / "validate" / "_SUCCESS.json").exists()
    out = validate_inputs(load(None, [*base, "validate.max_reject_rate=0.5"]), RETRAIN, "2026-10-12")
    assert out["valid_rows"] == {"catalog": 4, "search_log": 2}

    with pytest.raises(ValidationFailed, match="catalog: no rows"):
        validate_inputs(load(None, [*base, f"summarize.catalog={inputs / 'header_only.csv'}"]), CATALOG,
                        "2026-10-21")
