"""What an evaluation can detect (issue 22): the MDE against statsmodels, pairwise accuracy by hand, the
paired pair-level measures, and the "below what this set can detect" text in the table, report and MLflow."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from relsum.evaluation.offline import compute_offline_metrics, format_table, gains_table, to_jsonable
from relsum.evaluation.power import (
    BELOW,
    headline,
    mde,
    mde_pct,
    mlflow_metrics,
    paired_t_power,
    paired_table,
    standardized_mde,
    verdict,
)
from relsum.evaluation.report import write_report
from relsum.metrics import names
from relsum.metrics.ranking import mean_reward, pairwise_accuracy, per_query_pairwise_accuracy

# statsmodels' solver is unreliable where scipy's noncentral t loses its far tail (n = 2-4 with a strict
# alpha or high power: it returns 10.0 or a wrong root there), so the grid stays where it converges
CASES = ([(n, 0.8, 0.05) for n in (2, 3, 6, 11, 45, 200)] + [(n, 0.9, 0.05) for n in (3, 6, 45)]
         + [(n, 0.5, 0.1) for n in (3, 11, 200)] + [(n, 0.9, 0.01) for n in (6, 45)])


@pytest.mark.parametrize(("n", "power", "alpha"), CASES)
def test_mde_equals_statsmodels_solve_power(n, power, alpha):
    from statsmodels.stats.power import TTestPower

    ref = TTestPower()
    d = standardized_mde(n, power, alpha)
    solved = ref.solve_power(effect_size=None, nobs=n, alpha=alpha, power=power, alternative="two-sided")
    assert d == pytest.approx(float(np.ravel(solved)[0]), rel=1e-5)
    assert paired_t_power(d, n, alpha) == pytest.approx(power, abs=1e-8)
    assert paired_t_power(0.5, n, alpha) == pytest.approx(
        float(ref.power(effect_size=0.5, nobs=n, alpha=alpha, alternative="two-sided")), rel=1e-6)


def test_mde_where_statsmodels_gives_up():
    # n = 2, alpha 0.01, power 0.9: statsmodels returns 10.0 (power 0.18); ours reaches the power
    d = standardized_mde(2, 0.9, 0.01)
    assert d == pytest.approx(74.05, abs=0.01) and paired_t_power(d, 2, 0.01) == pytest.approx(0.9, abs=1e-8)


def test_mde_figures_of_the_issue_and_undefined_cases():
    assert standardized_mde(45) == pytest.approx(0.427, abs=1e-3)  # "about 0.43 sigma_d" with 45 queries
    assert mde(0.2, 45) == pytest.approx(0.2 * standardized_mde(45))
    assert standardized_mde(6) > 1.3  # 6 NDCG queries detect only changes above 1.3 sigma_d
    assert math.isnan(standardized_mde(1)) and math.isnan(mde(float("nan"), 45))
    with pytest.raises(ValueError):
        standardized_mde(10, power=1.0)


def test_verdict():
    assert verdict(0.05, 0.01, 0.09, 0.04) is True
    assert verdict(0.03, 0.01, 0.05, 0.04) is False  # CI clear of zero but below the MDE
    assert verdict(0.05, -0.01, 0.09, 0.04) is False  # above the MDE but the CI includes zero
    assert verdict(-0.05, -0.09, -0.01, 0.04) is True  # a loss is a finding too
    assert verdict(0.05, float("nan"), float("nan"), float("nan")) is False  # nothing can test it
    assert verdict(float("nan"), 0.0, 0.1, 0.04) is None


def test_pairwise_accuracy_by_hand():
    # q a: positives 0.9, 0.1; negatives 0.5, 0.9 -> (0.9>0.5) 1 + (0.9=0.9) 0.5 + 0 + 0 = 1.5 of 4
    # q b: one tie -> 0.5 of 1; q c: no negative -> 0 pairs; the 0.5 label in q b takes no part
    q = ["a", "a", "a", "a", "b", "b", "b", "c"]
    y = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.5, 1.0]
    s = [0.9, 0.5, 0.9, 0.1, 0.3, 0.3, 0.99, 0.5]
    uq, correct, pairs = per_query_pairwise_accuracy(q, y, s)
    assert list(uq) == ["a", "b", "c"]
    np.testing.assert_array_equal(correct, [1.5, 0.5, 0.0])
    np.testing.assert_array_equal(pairs, [4.0, 1.0, 0.0])
    assert pairwise_accuracy(q, y, s) == pytest.approx(2.0 / 5.0)
    assert math.isnan(pairwise_accuracy(["a", "b"], [1.0, 0.0], [0.1, 0.9]))  # no query has both labels
    assert pairwise_accuracy(["a", "a"], [1.0, 0.0], [0.9, 0.1]) == 1.0


def test_pairwise_accuracy_equals_brute_force_on_random_ties():
    rng = np.random.default_rng(3)
    q = rng.integers(0, 25, 600)
    y = rng.choice([0.0, 0.5, 1.0], 600)
    s = np.round(rng.random(600), 1)  # many ties
    uq, correct, pairs = per_query_pairwise_accuracy(q, y, s)
    for u, c, p in zip(uq, correct, pairs, strict=True):
        pos, neg = s[(q == u) & (y == 1.0)], s[(q == u) & (y == 0.0)]
        cmp = pos[:, None] - neg[None, :]
        assert c == (cmp > 0).sum() + 0.5 * (cmp == 0).sum() and p == len(pos) * len(neg)


def _scores(n_queries: int, lift: float, seed: int = 0) -> pd.DataFrame:
    """``n_queries`` queries of 6 products (3 label 1, 3 label 0); ``cand`` = ``none`` + ``lift`` on the
    positives; ``same`` = ``none``; every third query is tail."""
    rng = np.random.default_rng(seed)
    q = np.repeat(np.arange(n_queries), 6)
    labels = np.tile([1.0, 1.0, 1.0, 0.0, 0.0, 0.0], n_queries)
    none = np.clip(0.2 * labels + rng.normal(0.4, 0.25, len(q)), 0, 1)
    return pd.DataFrame({"query_id": [f"q{i}" for i in q], "product_id": np.arange(len(q)), "label": labels,
                         "tail": q % 3 == 0, "score_none": none, "score_same": none,
                         "score_cand": np.clip(none + lift * labels + rng.normal(0, 0.05, len(q)), 0, 1)})


def test_paired_measures_values_and_keys():
    df = _scores(12, lift=0.1)
    m = compute_offline_metrics(df, ["same", "cand"], n_boot=200)
    full = m["subsets"]["full"]
    assert m["config"]["mde"]["power"] == 0.8 and m["config"]["mde"]["alpha"] == 0.05
    assert (full["n_comparable_pairs"], full["n_queries_pairwise"]) == (12 * 9, 12)
    assert set(full["pairwise_accuracy"]) == {"none", "same", "cand"}
    acc = {c: pairwise_accuracy(df["query_id"], df["label"], df[f"score_{c}"]) for c in ("none", "cand")}
    assert full["pairwise_accuracy"]["cand"]["value"] == pytest.approx(acc["cand"])
    assert set(full["paired"]) == {"same", "cand"}  # the baseline is not paired with itself
    cand = full["paired"]["cand"]
    assert set(cand) == set(names.paired_metrics(m["config"]))
    assert set(cand["reward"]) == {"value", "lo", "hi", "sd_diff", "n_queries", "mde", "detectable"}
    reward_diff = mean_reward(df["label"], df["score_cand"]) - mean_reward(df["label"], df["score_none"])
    assert cand["reward"]["value"] == pytest.approx(reward_diff)
    assert cand["pairwise_accuracy"]["value"] == pytest.approx(acc["cand"] - acc["none"])
    ndcg = full["candidates"]
    assert cand["ndcg@5"]["value"] == pytest.approx(ndcg["cand"]["ndcg@5"]["value"]
                                                       - ndcg["none"]["ndcg@5"]["value"])
    # equal pair counts per query: sigma_d of the reward is the spread of the per-query mean differences
    per_q = (df.assign(d=-(df["score_cand"] - df["label"]).abs() + (df["score_none"] - df["label"]).abs())
             .groupby("query_id")["d"].mean())
    assert cand["reward"]["sd_diff"] == pytest.approx(per_q.std(ddof=1))
    assert cand["reward"]["mde"] == pytest.approx(standardized_mde(12) * per_q.std(ddof=1))
    for metric in names.paired_metrics(m["config"]):
        e = cand[metric]
        assert e["lo"] <= e["value"] <= e["hi"] and e["mde"] > 0, metric
    same = full["paired"]["same"]
    for metric in names.paired_metrics(m["config"]):  # same as the baseline: 0, zero-width CI, no finding
        assert (same[metric]["value"], same[metric]["lo"], same[metric]["hi"]) == (0.0, 0.0, 0.0)
        assert same[metric]["detectable"] is False
    json.dumps(to_jsonable(m), allow_nan=False)


def test_table_says_below_what_the_set_can_detect():
    m = to_jsonable(compute_offline_metrics(_scores(12, lift=0.1), ["same", "cand"], n_boot=200))
    text = format_table(m)
    assert "| same | +0.0% [+0.0, +0.0] † | " in text  # an identical candidate never reads as a finding
    assert "Paired difference vs `none`" in text
    # the issue's case: a CI clear of zero on 12 queries, yet smaller than what 12 queries can detect
    ndcg = m["subsets"]["full"]["paired"]["cand"]["ndcg@5"]
    assert ndcg["lo"] > 0 and ndcg["value"] < ndcg["mde"] and ndcg["detectable"] is False
    row = gains_table(m, detectable=True).loc["cand"]
    assert row["Golden-full NDCG@5"].endswith(" †")
    assert row["detectable"].startswith(f"{BELOW}: ") and "full NDCG@5 (MDE " in row["detectable"]
    assert "MDE: the smallest true change a paired t-test" in text
    assert "pairwise accuracy (1 vs 0)" in text  # absolute table column and paired table column
    assert list(gains_table(m).columns) == ["Golden-full R@90P", "Golden-full NDCG@5",
                                            "Golden-tail R@90P", "Golden-tail NDCG@5"]  # default unchanged
    assert "detectable" in gains_table(m, detectable=True).columns
    table = paired_table(m)
    assert table.loc[("Golden-full", "same"), "detectable"].startswith(BELOW)


def test_a_clear_gain_on_many_queries_is_detectable():
    m = compute_offline_metrics(_scores(200, lift=0.3), ["cand"], n_boot=200)
    cand = m["subsets"]["full"]["paired"]["cand"]
    for metric in ("reward", "pairwise_accuracy", "ndcg@5"):
        assert cand[metric]["detectable"] is True, metric
    row = gains_table(m, detectable=True).loc["cand"]
    assert not row["Golden-full NDCG@5"].endswith("†")
    assert "detectable: " in row["detectable"] and "full NDCG@5 (MDE " in row["detectable"]


def test_report_and_mlflow_names_carry_the_mde(tmp_path):
    df = _scores(9, lift=0.05)
    m = to_jsonable(compute_offline_metrics(df, ["cand"], n_boot=100))
    paths = write_report(m, df, tmp_path)
    md, page = paths["md"].read_text(), paths["html"].read_text()
    assert BELOW in md and BELOW in page and "what this set can detect</h2>" in page
    flat = mlflow_metrics(m, "cand")
    key = names.diff_key("full", "pairwise_accuracy", "mde")
    assert key == "eval.full.pairwise_accuracy.diff.mde_p80_a05"
    assert flat[key] == pytest.approx(m["subsets"]["full"]["paired"]["cand"]["pairwise_accuracy"]["mde"])
    assert flat["eval.tail.reward.diff.lo"] == m["subsets"]["tail"]["paired"]["cand"]["reward"]["lo"]
    assert "eval.full.pairwise_accuracy" in flat and "eval.full.reward.hi" in flat
    base = mlflow_metrics(m, "none", "none")  # the baseline: its pair-level values, no differences
    assert "baseline.none.full.pairwise_accuracy" in base and not any(".diff" in k for k in base)


def test_metric_names_of_the_new_keys():
    assert names.mde_stat() == "mde_p80_a05" and names.mde_stat(0.9, 0.01) == "mde_p90_a01"
    assert names.diff_key("tail", "reward", "lo", candidate="desc") == "baseline.desc.tail.reward.diff.lo"
    assert names.pair_key("full", "pairwise_accuracy", "hi") == "eval.full.pairwise_accuracy.hi"
    for bad in (lambda: names.pair_key("full", "ndcg@5"), lambda: names.diff_key("full", "auc"),
                lambda: names.diff_key("full", "reward", "mid"), lambda: names.mde_stat(1.0)):
        with pytest.raises(ValueError):
            bad()


@pytest.fixture(scope="module")
def golden(golden_subset):
    """6 golden queries of the bundled sample with their judged products (a tiny evaluation)."""
    return golden_subset(6)


@pytest.mark.slow  # a tiny cross-encoder scores 6 golden queries: ~30 s on a loaded 2-core host
def test_tiny_evaluation_files_table_and_mlflow_carry_what_it_can_detect(golden, tmp_path, monkeypatch,
                                                                         tiny_cross_encoder_dir):
    from mlflow import MlflowClient

    from relsum.lifecycle import tracking as tr
    from relsum.lifecycle.config import TrackingConfig
    from relsum.pipelines.configs import EvaluateConfig
    from relsum.pipelines.demo_report import log_demo_evaluation
    from relsum.pipelines.evaluate import run

    ids = sorted(pd.read_csv(golden / "judgments.csv", dtype=str)["product_id"].unique())
    summaries = tmp_path / "mine.csv"
    pd.DataFrame({"product_id": ids, "summary": "black usb cable"}).to_csv(summaries, index=False)
    result = run(EvaluateConfig(golden=str(golden), reward_model=str(tiny_cross_encoder_dir),
                                summaries={"mine": str(summaries)}, out_dir=str(tmp_path / "eval"),
                                n_boot=50))
    assert BELOW in result.table and "| detectable |" in result.table  # what evaluate and the demo print
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["config"]["mde"] == {"power": 0.8, "alpha": 0.05,
                                        "test": "paired t (noncentral t), two-sided"}
    full = metrics["subsets"]["full"]
    assert {"none", "desc", "mine"} <= set(full["pairwise_accuracy"]) and full["n_comparable_pairs"] > 0
    assert set(full["paired"]) == set(full["pairwise_accuracy"]) - {"none"}  # every candidate vs title-only
    for cand in ("desc", "mine"):
        for metric in names.paired_metrics(metrics["config"]):
            keys = set(full["paired"][cand][metric])
            assert {"value", "lo", "hi", "mde", "n_queries", "detectable"} <= keys
    assert full["paired"]["mine"]["ndcg@5"]["n_queries"] == full["n_queries_ndcg"]
    md = (tmp_path / "eval" / "report.md").read_text()
    page = (tmp_path / "eval" / "report.html").read_text()
    assert BELOW in md and BELOW in page  # 6 queries detect nothing NDCG@5 could show

    monkeypatch.setenv("RELSUM_HOME", str(tmp_path / "home"))
    tracking = TrackingConfig()
    with tr.tracked_run(tracking, "run") as active:
        run_id = active.info.run_id
    log_demo_evaluation(tracking, run_id, result, "mine", {})
    logged = MlflowClient(tracking.resolved_uri()).get_run(run_id).data.metrics
    mine = full["paired"]["mine"]["pairwise_accuracy"]
    assert logged[names.diff_key("full", "pairwise_accuracy", "mde")] == pytest.approx(mine["mde"])
    assert logged[names.diff_key("full", "reward", candidate="desc")] == pytest.approx(
        full["paired"]["desc"]["reward"]["value"])
    assert "baseline.none.full.pairwise_accuracy" in logged and "eval.full.ndcg_at_5" in logged


def test_headline_says_the_gain_and_what_the_set_can_detect():
    small = to_jsonable(compute_offline_metrics(_scores(12, lift=0.1), ["cand"], n_boot=200))
    line = headline(small, "cand", whole_queries=48)
    entry = small["subsets"]["full"]["paired"]["cand"]["ndcg@5"]
    assert line.startswith("cand vs none, NDCG@5 on golden-full (12 queries count): +")
    assert line.count(BELOW) == 1 and "a finding" not in line
    pct = mde_pct(small, "full", "cand", "ndcg@5")
    assert f"detects changes of {pct:.1f}% or more (80% power)" in line
    base = small["subsets"]["full"]["candidates"]["none"]["ndcg@5"]["value"]
    whole = 100 * standardized_mde(48) * entry["sd_diff"] / base
    assert f"the whole split (48 queries) would detect about {whole:.1f}%" in line
    assert whole < pct  # four times the queries: a smaller detectable change
    big = compute_offline_metrics(_scores(200, lift=0.3), ["cand"], n_boot=200)
    assert headline(big, "cand").endswith("a finding")  # no whole-split clause when it is the whole split


def test_ndcg_query_count_follows_the_evaluation_rule():
    from relsum.evaluation.offline import ndcg_query_count

    df = _scores(9, lift=0.1)
    no_positive = df["query_id"] == "q1"
    df.loc[no_positive, "label"] = 0.0  # excluded: nothing to rank first
    df = df[~((df["query_id"] == "q2") & (df.index % 6 != 0))]  # q2: one judged product, excluded
    m = compute_offline_metrics(df, ["cand"], n_boot=50)
    assert ndcg_query_count(df) == m["subsets"]["full"]["n_queries_ndcg"] == 7
