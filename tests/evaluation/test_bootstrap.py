"""Paired query bootstrap: replicates against brute force, and the properties of the intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from relsum.evaluation.bootstrap import (
    gain_pct,
    ndcg_replicates,
    paired_bootstrap,
    percentile_interval,
    recall_at_precision_replicates,
    resample_counts,
)
from relsum.metrics.ranking import per_query_ndcg_at_k, recall_at_precision


def _data(n_queries: int, seed: int = 0, noise: float = 0.2):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 15, n_queries)
    q = np.repeat(np.arange(n_queries), sizes)
    labels = rng.choice([0.0, 0.5, 1.0], size=len(q), p=[0.5, 0.2, 0.3])
    base = np.round(0.7 * labels + rng.normal(0.3, noise, len(q)), 2)
    better = np.round(1.0 * labels + rng.normal(0.3, noise, len(q)), 2)
    return q, labels, base, better


def test_resample_counts_shape_sum_and_seed():
    c = resample_counts(50, n_boot=20, seed=3)
    assert c.shape == (20, 50)
    assert (c.sum(axis=1) == 50).all()
    np.testing.assert_array_equal(c, resample_counts(50, n_boot=20, seed=3))
    assert not np.array_equal(c, resample_counts(50, n_boot=20, seed=4))
    assert resample_counts(0, n_boot=5).shape == (5, 0)
    with pytest.raises(ValueError):
        resample_counts(5, n_boot=0)


@pytest.mark.parametrize("max_cells", [2_000_000, 7])  # 7: many small blocks and the early stop
def test_r_at_p_replicates_equal_recomputation_on_expanded_pairs(max_cells):
    q, labels, base, _ = _data(40, seed=1)
    counts = resample_counts(40, n_boot=25, seed=0)
    reps = recall_at_precision_replicates(q, labels, base, counts, 0.9, max_cells=max_cells)
    for b in range(25):
        idx = np.concatenate([np.flatnonzero(q == j) for j in np.repeat(np.arange(40), counts[b])])
        assert reps[b] == recall_at_precision(labels[idx], base[idx], 0.9), b
    ones = np.ones((1, 40), dtype=np.int32)
    for p in (0.9, 0.6):
        rep = recall_at_precision_replicates(q, labels, base, ones, p, max_cells=max_cells)
        assert rep[0] == recall_at_precision(labels, base, p)


def test_r_at_p_replicate_without_positives_is_nan():
    q = np.array([0, 0, 1, 1])
    reps = recall_at_precision_replicates(q, np.array([1, 0, 0, 0.5]), np.array([0.9, 0.1, 0.5, 0.4]),
                                          np.array([[0, 2], [1, 1]]))
    assert math.isnan(reps[0]) and reps[1] == 1.0


def test_ndcg_replicates_equal_mean_of_resampled_values():
    values = np.array([0.2, np.nan, 0.8, 0.5])
    counts = np.array([[1, 1, 1, 1], [0, 4, 0, 0], [2, 0, 0, 2], [0, 1, 3, 0]])
    reps = ndcg_replicates(values, counts)
    np.testing.assert_allclose(reps[[0, 2, 3]], [0.5, 0.35, 0.8])
    assert math.isnan(reps[1])  # only the undefined query was drawn


def test_gain_and_interval_helpers():
    assert gain_pct(1.1, 1.0) == pytest.approx(10.0)
    assert math.isnan(gain_pct(0.3, 0.0))
    np.testing.assert_allclose(gain_pct([2.0, 1.0], [1.0, 0.0]), [100.0, np.nan])
    assert all(math.isnan(x) for x in percentile_interval(np.array([np.nan, np.nan])))
    lo, hi = percentile_interval(np.arange(101.0), level=0.9)
    assert (lo, hi) == pytest.approx((5.0, 95.0))


def _boot(n_queries, seed=0, n_boot=300, same=False):
    q, labels, base, better = _data(n_queries, seed)
    scores = {"none": base, "cand": base.copy() if same else better}
    return paired_bootstrap(q, labels, scores, n_boot=n_boot, seed=seed)


def _flat(res):
    return [
        x for name in res for m in ("r@90p", "ndcg@5")
        for iv in (res[name][m], res[name]["gain_pct"][m]) for x in (iv.value, iv.lo, iv.hi)
    ]


def test_intervals_contain_point_and_are_seeded():
    res = _boot(300)
    for name in ("none", "cand"):
        for metric in ("r@90p", "ndcg@5"):
            iv = res[name][metric]
            assert iv.lo <= iv.value <= iv.hi, (name, metric, iv)
    for metric in ("r@90p", "ndcg@5"):
        gain = res["cand"]["gain_pct"][metric]
        assert gain.lo <= gain.value <= gain.hi and gain.value > 0, (metric, gain)
    np.testing.assert_array_equal(_flat(_boot(300)), _flat(res))  # same seed, same intervals
    other = paired_bootstrap(*_data(300)[:2], {"none": _data(300)[2], "cand": _data(300)[3]}, n_boot=300,
                             seed=9)
    assert other["cand"]["ndcg@5"] != res["cand"]["ndcg@5"]


def test_intervals_narrow_with_more_queries():
    small, large = _boot(60), _boot(1500)
    for metric in ("r@90p", "ndcg@5"):
        w_small = small["cand"][metric].hi - small["cand"][metric].lo
        w_large = large["cand"][metric].hi - large["cand"][metric].lo
        assert w_large < 0.6 * w_small, metric


def test_gain_of_baseline_against_itself_is_zero_with_zero_width():
    res = _boot(100, same=True)
    for metric in ("r@90p", "ndcg@5"):
        g = res["cand"]["gain_pct"][metric]
        assert (g.value, g.lo, g.hi) == (0.0, 0.0, 0.0)
        assert res["none"]["gain_pct"][metric].value == 0.0


def test_gain_undefined_when_baseline_metric_is_zero():
    # the baseline puts every negative above every positive: R@90P = 0 -> gain undefined
    q = np.repeat(np.arange(20), 2)
    labels = np.tile([1.0, 0.0], 20)
    res = paired_bootstrap(q, labels, {"none": np.tile([0.2, 0.8], 20), "cand": np.tile([0.8, 0.2], 20)},
                           n_boot=50)
    assert res["none"]["r@90p"].value == 0.0
    g = res["cand"]["gain_pct"]["r@90p"]
    assert all(math.isnan(x) for x in (g.value, g.lo, g.hi))
    _, per_q = per_query_ndcg_at_k(q, labels, np.tile([0.2, 0.8], 20))
    assert res["none"]["ndcg@5"].value == pytest.approx(per_q.mean())


def test_baseline_must_be_a_candidate():
    with pytest.raises(ValueError, match="baseline"):
        paired_bootstrap([0], [1.0], {"cand": np.array([0.5])})
