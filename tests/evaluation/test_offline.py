"""compute_offline_metrics: structure, hand-computed gains, empty tail, input checks, formatting."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from relsum.evaluation.offline import (
    compute_offline_metrics,
    format_gain,
    format_table,
    gains_table,
    to_jsonable,
)


def hand_scores(tail_queries=(0, 5)) -> pd.DataFrame:
    """10 queries, each one label-1 and one label-0 product.

    ``none`` ranks the positive first (score 0.9) in queries 0-4 and second (0.1 vs 0.5) in 5-9:
    R@90P = 0.5 (threshold 0.9: 5 tp, 0 fp), NDCG@5 = (5 * 1 + 5 / log2(3)) / 10.
    ``perfect`` ranks every positive first at 0.9: R@90P = 1, NDCG@5 = 1.
    """
    rows = []
    for q in range(10):
        for label in (1.0, 0.0):
            rows.append({
                "query_id": f"q{q}", "product_id": f"p{q}_{int(label)}", "label": label,
                "tail": q in tail_queries, "score_none": (0.9 if q < 5 else 0.1) if label else 0.5,
                "score_perfect": 0.9 if label else 0.5,
                "score_same": (0.9 if q < 5 else 0.1) if label else 0.5,
            })
    return pd.DataFrame(rows)


NDCG_NONE = (5 + 5 / math.log2(3)) / 10


def test_structure_counts_and_json():
    m = compute_offline_metrics(hand_scores(), ["perfect", "same"], n_boot=50)
    assert m["config"]["candidates"] == ["none", "perfect", "same"]  # baseline added first
    assert m["config"]["metric_names"] == {"r@90p": "R@90P", "ndcg@5": "NDCG@5"}
    full, tail = m["subsets"]["full"], m["subsets"]["tail"]
    assert (full["n_queries"], full["n_pairs"], full["n_positive_pairs"]) == (10, 20, 10)
    assert (tail["n_queries"], tail["n_pairs"], tail["n_queries_excluded_no_positive"]) == (2, 4, 0)
    entry = full["candidates"]["perfect"]
    assert set(entry) == {"r@90p", "ndcg@5", "reward", "gain_pct"}
    assert set(entry["gain_pct"]) == {"r@90p", "ndcg@5"}
    assert set(entry["ndcg@5"]) == {"value", "lo", "hi"}
    text = json.dumps(to_jsonable(m), allow_nan=False)
    assert json.loads(text)["subsets"]["full"]["n_pairs"] == 20


def test_hand_made_values_and_gains_table():
    m = compute_offline_metrics(hand_scores(), ["none", "perfect", "same"], n_boot=200)
    full = m["subsets"]["full"]["candidates"]
    assert full["none"]["r@90p"]["value"] == 0.5
    assert full["none"]["ndcg@5"]["value"] == pytest.approx(NDCG_NONE)
    assert full["perfect"]["r@90p"]["value"] == 1.0
    assert full["perfect"]["gain_pct"]["r@90p"]["value"] == pytest.approx(100.0)
    ndcg_gain = 100 * (1 - NDCG_NONE) / NDCG_NONE  # 22.63 %
    assert full["perfect"]["gain_pct"]["ndcg@5"]["value"] == pytest.approx(ndcg_gain)
    # tail = q0 (positive first for both) and q5 (none wrong): NDCG none = (1 + 1/log2 3) / 2
    tail_none = (1 + 1 / math.log2(3)) / 2
    tail = m["subsets"]["tail"]["candidates"]
    assert tail["perfect"]["gain_pct"]["ndcg@5"]["value"] == pytest.approx(
        100 * (1 - tail_none) / tail_none)

    table = gains_table(m)
    assert list(table.index) == ["perfect", "same"]
    assert list(table.columns) == ["Golden-full R@90P", "Golden-full NDCG@5",
                                   "Golden-tail R@90P", "Golden-tail NDCG@5"]
    assert table.loc["perfect", "Golden-full R@90P"].startswith("+100.0% [")
    assert table.loc["perfect", "Golden-full NDCG@5"].startswith(f"+{ndcg_gain:.1f}% [")
    assert table.loc["same", "Golden-full NDCG@5"] == "+0.0% [+0.0, +0.0]"
    text = format_table(m)
    assert "| perfect | +100.0% [" in text and "Absolute values" in text
    assert f"{NDCG_NONE:.3f} [" in text


def test_reward_is_the_mean_calibration_error_with_a_query_ci():
    m = compute_offline_metrics(hand_scores(), ["perfect"], n_boot=200)
    full = m["subsets"]["full"]["candidates"]
    assert full["perfect"]["reward"]["value"] == pytest.approx(-0.3)  # |0.9 - 1| and |0.5 - 0|, averaged
    none = full["none"]["reward"]
    assert none["value"] == pytest.approx(-0.5)  # five queries at -0.3, five at -0.7
    assert -0.7 < none["lo"] < none["value"] < none["hi"] < -0.3
    assert "reward −|r−l|" in format_table(m) and "-0.300 [" in format_table(m)
    empty = compute_offline_metrics(hand_scores(tail_queries=()), ["perfect"], n_boot=20)
    assert math.isnan(empty["subsets"]["tail"]["candidates"]["perfect"]["reward"]["value"])


def test_empty_tail_subset_does_not_crash():
    m = compute_offline_metrics(hand_scores(tail_queries=()), ["perfect"], n_boot=20)
    tail = m["subsets"]["tail"]
    assert (tail["n_queries"], tail["n_pairs"], tail["n_queries_ndcg"]) == (0, 0, 0)
    assert math.isnan(tail["candidates"]["perfect"]["ndcg@5"]["value"])
    assert to_jsonable(m)["subsets"]["tail"]["candidates"]["perfect"]["r@90p"]["value"] is None
    assert gains_table(m).loc["perfect", "Golden-tail NDCG@5"] == "n/a"
    assert "n/a" in format_table(m)


def test_queries_without_positive_are_counted():
    df = hand_scores()
    df.loc[df["query_id"] == "q9", "label"] = 0.0
    m = compute_offline_metrics(df, ["perfect"], n_boot=20)
    full = m["subsets"]["full"]
    assert (full["n_queries"], full["n_queries_ndcg"], full["n_queries_excluded_no_positive"]) == (10, 9, 1)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda df: df.drop(columns="score_perfect"), "lacks column"),
        (lambda df: df.drop(columns="tail"), "lacks column"),
        (lambda df: df.assign(score_perfect=np.where(df.index == 3, np.nan, df["score_perfect"])),
         "score_perfect"),
        (lambda df: df.assign(label=df["label"].astype(object).where(df.index != 2, "high")), "'label'"),
        (lambda df: df.assign(label=-df["label"]), "non-negative"),
        (lambda df: pd.concat([df, df.iloc[:1]]), "duplicate"),
        (lambda df: df.assign(tail=df.index == 0), "differs within"),
        (lambda df: df.assign(tail="yes"), "boolean"),
        (lambda df: df.assign(query_id=df["query_id"].where(df.index != 4, None)), "missing query_id"),
    ],
)
def test_bad_input_is_rejected(mutate, match):
    with pytest.raises(ValueError, match=match):
        compute_offline_metrics(mutate(hand_scores()), ["perfect"], n_boot=10)


def test_format_gain_and_to_jsonable():
    assert format_gain({"value": 3.14, "lo": -0.5, "hi": 6.8}) == "+3.1% [−0.5, +6.8]"
    assert format_gain({"value": -1.26, "lo": -2.0, "hi": None}) == "−1.3% [n/a]"
    assert format_gain({"value": None, "lo": None, "hi": None}) == "n/a"
    assert to_jsonable({"a": np.float32(1.5), "b": [np.int64(2), float("inf")], "c": (np.nan,)}) == {
        "a": 1.5, "b": [2, None], "c": [None]}
    with pytest.raises(TypeError):
        to_jsonable({"x": object()})


def esci_scores(n_multi: int = 0) -> pd.DataFrame:
    """20 queries with one judged product each (ESCI-style), scores that rank well and badly, plus
    ``n_multi`` queries of :func:`hand_scores` with two judged products."""
    rows = [{"query_id": f"s{q}", "product_id": f"s{q}", "label": float(q % 2), "tail": False,
             "score_none": 0.5, "score_good": 0.9 if q % 2 else 0.1, "score_bad": 0.1 if q % 2 else 0.9}
            for q in range(20)]
    multi = hand_scores().assign(score_good=lambda d: d["score_perfect"],
                                 score_bad=lambda d: 1 - d["score_perfect"])
    multi = multi[multi["query_id"].isin([f"q{i}" for i in range(n_multi)])]
    return pd.concat([pd.DataFrame(rows), multi[list(rows[0])]], ignore_index=True)


def test_single_judged_queries_are_excluded_from_ndcg_and_the_table_leads_with_recall():
    m = compute_offline_metrics(esci_scores(), ["good", "bad"], n_boot=50)
    full = m["subsets"]["full"]
    # 10 queries with their one product at label 1, 10 at label 0 (no positive)
    assert (full["n_queries"], full["n_queries_ndcg"]) == (20, 0)
    assert (full["n_queries_excluded_single_judged"], full["n_queries_excluded_no_positive"]) == (10, 10)
    for cand in ("good", "bad"):  # without the exclusion: NDCG 1.000 and +0.0% for both
        assert math.isnan(full["candidates"][cand]["ndcg@5"]["value"])
        assert format_gain(full["candidates"][cand]["gain_pct"]["ndcg@5"]) == "n/a"
    assert full["candidates"]["good"]["r@90p"]["value"] == 1.0
    assert full["candidates"]["bad"]["r@90p"]["value"] == 0.0
    table = gains_table(m)
    assert list(table.columns)[:2] == ["Golden-full R@90P", "Golden-tail R@90P"]  # R@90P first
    text = format_table(m)
    assert text.startswith("Note: 10 of 20 queries have a single judged product")
    assert "NDCG@5 is undefined on this set; read R@90P" in text


def test_a_few_single_judged_queries_are_counted_but_ndcg_still_leads():
    scores = esci_scores(n_multi=10)
    m = compute_offline_metrics(
        scores[~scores["query_id"].str.startswith("s") | scores["query_id"].isin(["s0", "s1"])],
        ["good"], n_boot=20)
    full = m["subsets"]["full"]
    assert (full["n_queries_ndcg"], full["n_queries_excluded_single_judged"]) == (10, 1)
    assert full["candidates"]["good"]["ndcg@5"]["value"] == 1.0
    assert list(gains_table(m).columns)[:2] == ["Golden-full R@90P", "Golden-full NDCG@5"]
    assert "NDCG@5 uses the other 10" in format_table(m)
