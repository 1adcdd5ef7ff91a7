"""load_golden on the bundled sample (every row valid) and on small folders with bad rows."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from relsum.core.paths import SAMPLE_DIR
from relsum.data.config import ContractConfig
from relsum.data.contracts import ContractError
from relsum.data.golden import SAMPLE_GRADE_MAP, config_for, find_catalog, load_golden


@pytest.fixture(scope="module")
def sample_root() -> Path:
    """The bundled sample (products.jsonl + golden/ + train/)."""
    return SAMPLE_DIR


@pytest.fixture(scope="module")
def sample_sets(sample_root):
    return {name: load_golden(sample_root / name) for name in ("golden", "train")
            if (sample_root / name / "queries.csv").is_file()}


def test_sample_is_fully_valid(sample_sets):
    judgments = pd.concat([g.judgments for g in sample_sets.values()])
    queries = pd.concat([g.queries for g in sample_sets.values()])
    for golden in sample_sets.values():
        assert golden.n_rejected == 0, {k: r["reason"].value_counts().to_dict() for k,
                                        r in golden.rejects.items()}
        assert len(golden.catalog) == 1631
        cat = golden.catalog
        assert cat["title"].str.len().gt(0).all()
        assert ((cat["text"] == "") == ((cat["description"] == "") & (cat["attributes"] == ""))).all()
        assert cat["text"].str.split().str.len().max() <= 256
        assert set(golden.judgments["product_id"]) <= set(golden.catalog["product_id"])
    assert len(judgments) == 1954 and len(queries) == 90
    assert judgments["label"].value_counts().to_dict() == {0.0: 965, 1.0: 938, 0.5: 51}
    assert int(queries["tail"].sum()) == 30  # rarity_tier == "tail"
    assert list(judgments.columns[:4]) == ["query_id", "product_id", "grade", "label"]


def test_sample_with_paper_map_rejects_nothing_but_changes_labels(sample_root, sample_sets):
    name = next(iter(sample_sets))
    paper = load_golden(sample_root / name, ContractConfig())
    assert paper.n_rejected == 0
    merged = paper.judgments.merge(sample_sets[name].judgments, on=["query_id", "product_id"])
    assert ((merged["grade_x"] == "3") == (merged["label_x"] == 0.5)).all()
    assert ((merged["grade_x"] == "3") == (merged["label_y"] == 1.0)).all()


def _write_folder(root: Path, judgments: str, yaml_text: str | None = None) -> Path:
    folder = root / "golden"
    folder.mkdir(parents=True)
    (folder / "queries.csv").write_text("query_id,query,traffic\nq1,phone,100\nq2,tv,5\nq3,rtx 2060,1\n")
    (folder / "judgments.csv").write_text(judgments)
    (root / "products.jsonl").write_text(
        '{"product_id": "p1", "title": "Phone", "description": "A phone", "attributes": {"colour": "red"}}\n'
        '{"product_id": "p2", "title": "", "description": "no title"}\n'
        '{"product_id": "p3", "title": "TV", "description": ""}\n')
    if yaml_text is not None:
        (root / "relsum.yaml").write_text(yaml_text)
    return folder


def test_unknown_and_rejected_products_are_rejected_not_dropped(tmp_path):
    folder = _write_folder(tmp_path,
                           "query_id,product_id,grade\nq1,p1,Exact\nq1,p2,Partial\nq2,p9,Irrelevant\n"
                           "q9,p3,Exact\nq3,p3,Great\n", yaml_text=None)
    golden = load_golden(folder, ContractConfig(grade_map=SAMPLE_GRADE_MAP))
    assert golden.judgments[["product_id", "label"]].values.tolist() == [["p1", 1.0]]
    reasons = golden.rejects["judgments"]["reason"].tolist()
    assert reasons == ["unknown product: p2", "unknown product: p9", "unknown query: q9",
                       "unknown grade: 'Great'"]
    assert golden.rejects["catalog"]["reason"].tolist() == ["empty title"]
    assert golden.queries.set_index("query_id")["tail"].to_dict() == {"q1": False, "q2": False, "q3": True}
    assert golden.summaries["judgments"]["rejected"] == 4


def test_relsum_yaml_grade_map_is_detected(tmp_path):
    folder = _write_folder(tmp_path, "query_id,product_id,grade\nq1,p1,3\nq2,p3,2\n",
                           yaml_text="other_stage: {x: 1}\ngrade_map: {3: 1.0, 2: 0.5, 1: 0, 0: 0}\n")
    assert config_for(folder).grade_map == {"3": 1.0, "2": 0.5, "1": 0.0, "0": 0.0}
    assert load_golden(folder).judgments["label"].tolist() == [1.0, 0.5]
    (tmp_path / "relsum.yaml").write_text("other_stage: {x: 1}\n")
    assert load_golden(folder).judgments["label"].tolist() == [0.5, 0.0]  # paper map


def test_catalog_lookup_and_override(tmp_path):
    folder = _write_folder(tmp_path, "query_id,product_id,grade\nq1,p1,4\n")
    assert find_catalog(folder) == (tmp_path / "products.jsonl").resolve()
    pd.DataFrame({"product_id": ["p1"], "title": ["Local"], "description": ["d"]}).to_csv(
        folder / "catalog.csv", index=False)
    assert find_catalog(folder) == (folder / "catalog.csv").resolve()
    assert load_golden(folder).catalog["title"].tolist() == ["Local"]
    frame = pd.DataFrame({"product_id": ["p1", "p5"], "title": ["Given", "Other"], "description": ["", ""]})
    assert load_golden(folder, catalog=frame).catalog["title"].tolist() == ["Given", "Other"]
    (folder / "catalog.csv").unlink()
    (tmp_path / "products.jsonl").unlink()
    with pytest.raises(ContractError, match="no catalog found"):
        load_golden(folder)
    (folder / "queries.csv").unlink()
    with pytest.raises(ContractError, match="queries.csv not found"):
        load_golden(folder, catalog=frame)


def test_golden_table_with_no_valid_rows_is_warned(tmp_path, caplog):
    folder = _write_folder(tmp_path, "query_id,product_id,grade\nq1,p9,Exact\n", yaml_text=None)
    golden = load_golden(folder, ContractConfig(grade_map=SAMPLE_GRADE_MAP))
    assert golden.judgments.empty
    assert "judgments has no valid rows (1 in, 1 rejected)" in caplog.text
