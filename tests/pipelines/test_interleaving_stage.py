"""Interleaving export (tiny cross-encoder, real files) and analysis of synthetic logged events."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest

from relsum.online import interleaving as il
from relsum.pipelines.configs import AnalyzeConfig, ExportConfig
from relsum.pipelines.interleaving import run_analyze, run_export
from relsum.scoring.scorer import Scorer

QUERIES = {"q1": "wireless noise cancelling headphones", "q2": "usb c charger 65w",
           "q3": "camera lens adapter", "q4": "gaming mouse"}


@pytest.fixture(scope="module")
def scorer(tiny_cross_encoder_dir):
    return Scorer(tiny_cross_encoder_dir)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("interleave_in")
    products = [(f"p{i}", f"Product {i} {word}", f"description {i}") for i, word in
                enumerate(["headphones", "charger", "adapter", "mouse", "cable", "lens", "speaker",
                           "keyboard"])]
    products.append(("p_bad", "", "no title"))  # rejected by the catalog contract
    pd.DataFrame(products, columns=["product_id", "title",
                                    "description"]).to_csv(d / "catalog.csv", index=False)
    pd.DataFrame({"product_id": [f"p{i}" for i in range(6)],  # p6, p7 have no summary
                  "summary": [f"summary of product {i} for buyers" for i in range(6)]}).to_csv(
        d / "summaries.csv", index=False)
    rows = [(q, text, f"p{(j + k) % 8}") for j, (q, text) in enumerate(QUERIES.items()) for k in range(6)]
    rows += [("q1", QUERIES["q1"], "p_unknown"), ("q2", QUERIES["q2"], "p_bad"), ("q3", QUERIES["q3"], "p2")]
    cands = pd.DataFrame(rows, columns=["query_id", "query", "product_id"])
    cands.to_csv(d / "candidates.csv", index=False)
    cands.iloc[::-1].to_csv(d / "candidates_reversed.csv", index=False)
    return d


@pytest.fixture(scope="module")
def exported(inputs, scorer, tmp_path_factory):
    out = tmp_path_factory.mktemp("interleave_out")
    config = ExportConfig(candidates=str(inputs / "candidates.csv"), catalog=str(inputs / "catalog.csv"),
                          summaries=str(inputs / "summaries.csv"), out_dir=str(out), seed=3, length=5,
                          experiment_id="exp-1")
    return run_export(config, scorer=scorer), config


def test_export_writes_one_balanced_list_per_query(exported):
    result, config = exported
    frame = pd.read_parquet(result.paths.parquet)
    assert list(frame.columns) == ["experiment_id", "query_id", "query", "position", "product_id", "team",
                                   "control_rank", "variation_rank"]
    assert sorted(frame["query_id"].unique()) == sorted(QUERIES)
    assert (frame["experiment_id"] == "exp-1").all()
    for _, g in frame.groupby("query_id"):
        assert g["position"].tolist() == list(range(1, 6))
        assert g["product_id"].is_unique
        counts = g["team"].value_counts()
        assert abs(counts.get("control", 0) - counts.get("variation", 0)) <= 1
        # the top of the list is the first-picking team's top product
        first = g.iloc[0]
        assert first[f"{first['team']}_rank"] == 1
    lines = [json.loads(line)
             for line in Path(result.paths.jsonl).read_text(encoding="utf-8").splitlines()]
    assert [obj["query_id"] for obj in lines] == list(QUERIES)
    for obj in lines:
        assert obj["experiment_id"] == "exp-1" and obj["query"] == QUERIES[obj["query_id"]]
        expected = frame[frame["query_id"] == obj["query_id"]][["position", "product_id", "team"]]
        assert obj["items"] == expected.to_dict("records")


def test_export_rejects_and_manifest(exported, scorer):
    result, _ = exported
    rejects = pd.read_csv(result.paths.rejects)
    reasons = dict(zip(rejects["product_id"], rejects["reason"], strict=True))
    assert reasons["p_unknown"] == "unknown product: not in the catalog"
    assert reasons["p_bad"].startswith("unknown product: rejected by the catalog contract")
    assert reasons["p2"].startswith("duplicate key")
    assert set(rejects["row_number"]) == {24, 25, 26}
    manifest = json.loads(Path(result.paths.manifest).read_text(encoding="utf-8"))
    assert manifest["candidate_rows"] == 27 and manifest["valid_candidate_rows"] == 24
    assert manifest["rejected_candidate_rows"] == 3 and manifest["queries"] == 4 and manifest["items"] == 20
    assert manifest["products_without_summary"] == 2  # p6 and p7 fall back to the title
    assert manifest["scorer_fingerprint"] == scorer.fingerprint
    assert sum(manifest["first_pick"].values()) == 4 and manifest["seed"] == 3
    assert result.manifest["queries"] == 4
    # the layout `relsum export-interleaving` prints and the DAG's export step stores
    printed = result.to_dict()
    assert list(printed) == ["manifest", "paths"]
    assert {k: Path(v).name for k, v in printed["paths"].items()} == {
        "parquet": "interleaved.parquet", "jsonl": "interleaved.jsonl", "rejects": "rejects.csv",
        "manifest": "export_manifest.json"}


def test_export_is_independent_of_query_order(exported, inputs, scorer, tmp_path):
    result, config = exported
    reordered = ExportConfig(**{**config.__dict__, "candidates": str(inputs / "candidates_reversed.csv"),
                                "out_dir": str(tmp_path)})
    other = run_export(reordered, scorer=scorer)
    key = ["query_id", "position"]
    a = pd.read_parquet(result.paths.parquet).sort_values(key).reset_index(drop=True)
    b = pd.read_parquet(other.paths.parquet).sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_export_missing_column_is_a_clear_error(inputs, scorer, tmp_path):
    pd.DataFrame({"query_id": ["q1"], "product_id": ["p1"]}).to_csv(tmp_path / "c.csv", index=False)
    config = ExportConfig(candidates=str(tmp_path / "c.csv"), catalog=str(inputs / "catalog.csv"),
                          summaries=str(inputs / "summaries.csv"), out_dir=str(tmp_path / "out"))
    with pytest.raises(ValueError, match=r"missing required column\(s\) \['query'\]"):
        run_export(config, scorer=scorer)
    with pytest.raises(ValueError, match="candidates is required"):
        ExportConfig(catalog="x.csv", summaries="y.csv")


def _synthetic_events(frame: pd.DataFrame, n_per_query: int = 40) -> pd.DataFrame:
    """Users click variation items with p=0.5 and control items with p=0.15; a few bad events added."""
    rng = random.Random(0)
    rows = []
    for qid, g in frame.groupby("query_id"):
        for k in range(n_per_query):
            imp = f"{qid}-imp{k}"
            rows.append((qid, imp, "impression", None, None))
            for pos, pid, team in zip(g["position"], g["product_id"], g["team"], strict=True):
                if rng.random() < (0.5 if team == "variation" else 0.15):
                    by_position = rng.random() < 0.5
                    rows.append((qid, imp, "click", pos if by_position else None, None if by_position
                                 else pid))
                elif rng.random() < 0.05:
                    rows.append((qid, imp, "add_to_cart", pos, None))
    rows += [("q_nope", "x1", "click", 1, None), ("q1", "q1-imp0", "click", 99, None),
             ("q1", "q1-imp0", "click", None, "not-shown"), ("q1", "q1-imp0", "scroll", 1, None)]
    return pd.DataFrame(rows, columns=["query_id", "impression_id", "event", "position", "product_id"])


def test_analyze_finds_the_variation_preferred(exported, tmp_path):
    result, _ = exported
    frame = pd.read_parquet(result.paths.parquet)
    events = _synthetic_events(frame)
    events.to_csv(tmp_path / "events.csv", index=False)
    out = run_analyze(AnalyzeConfig(export=result.paths.parquet, events=str(tmp_path / "events.csv"),
                                    out_dir=str(tmp_path / "analysis")))
    overall = out.results["overall"]
    assert overall["wins"] > 2 * overall["losses"]
    assert overall["p_value"] < 1e-4 and overall["delta"] > 0.3
    assert overall["impressions"] == 160
    assert overall["wins"] + overall["losses"] + overall["ties"] + overall["no_preference"] == 160
    assert overall["p_value"] == pytest.approx(il.sign_test(overall["wins"], overall["losses"]))
    assert out.results["verdict"].startswith("variation preferred")
    rejects = pd.read_csv(out.paths.rejects)
    assert len(rejects) == 4 and out.results["events_rejected"] == 4
    assert sorted(r.split(":")[0] for r in rejects["reason"]) == [
        "position not in the interleaved list", "product not in the interleaved list", "unknown event type",
        "unknown query"]
    per_query = pd.read_csv(out.paths.per_query)
    assert sorted(per_query["query_id"]) == sorted(QUERIES)
    assert per_query["wins"].sum() == overall["wins"] and (per_query["impressions"] == 40).all()
    assert Path(out.paths.plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = Path(out.paths.report).read_text(encoding="utf-8")
    assert "variation preferred" in report and "interleaving.png" in report
    assert list(out.to_dict()) == ["results", "paths"] and list(out.paths.to_dict()) == [
        "results", "per_query", "impressions", "rejects", "plot", "report"]


def test_analyze_counts_add_to_cart_only_when_asked(exported, tmp_path):
    result, _ = exported
    frame = pd.read_parquet(result.paths.parquet)
    first = frame[frame["query_id"] == "q1"].iloc[0]
    events = pd.DataFrame({"query_id": ["q1", "q1"], "impression_id": ["i1", "i2"],
                           "event": ["add_to_cart", "click"], "position": [1, 1]})
    events.to_parquet(tmp_path / "events.parquet")
    base = {"export": result.paths.parquet, "events": str(tmp_path / "events.parquet")}
    clicks = run_analyze(AnalyzeConfig(**base, out_dir=str(tmp_path / "a"))).results["overall"]
    assert clicks["no_preference"] == 1 and clicks["wins"] + clicks["losses"] == 1
    both = run_analyze(AnalyzeConfig(**base, count_events=["click", "add_to_cart"],
                                     out_dir=str(tmp_path / "b")))
    winner = "wins" if first["team"] == "variation" else "losses"
    assert both.results["overall"][winner] == 2 and both.results["overall"]["no_preference"] == 0
    with pytest.raises(ValueError, match="count_events"):
        AnalyzeConfig(**base, count_events=["impression"])
