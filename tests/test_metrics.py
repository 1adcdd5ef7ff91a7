"""relsum.metrics.ranking against scikit-learn on random data with ties, on hand-computed cases, and as the
one
definition."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import ndcg_score, precision_recall_curve

from relsum.metrics.ranking import (
    mean_ndcg_at_k,
    mean_reward,
    ndcg_at_k,
    per_query_ndcg_at_k,
    precision_recall_points,
    recall_at_precision,
)


def _random_pairs(seed: int, n: int | None = None, decimals: int = 1):
    rng = np.random.default_rng(seed)
    n = n or int(rng.integers(2, 40))
    labels = rng.choice([0.0, 0.5, 1.0], size=n, p=[0.5, 0.2, 0.3])
    # scores correlated with labels, rounded so that ties are frequent
    scores = np.round(np.clip(0.6 * labels + rng.normal(0.3, 0.25, n), 0, 1), decimals)
    return labels, scores


def _sklearn_r_at_p(labels, scores, p):
    precision, recall, _ = precision_recall_curve(labels == 1.0, scores)
    return float(recall[precision >= p].max())


@pytest.mark.parametrize("decimals", [1, 2, 6])
def test_recall_at_precision_matches_sklearn(decimals):
    checked = 0
    for seed in range(50):
        labels, scores = _random_pairs(seed, decimals=decimals)
        if not (labels == 1.0).any():
            continue
        for p in (0.9, 0.6):
            assert recall_at_precision(labels, scores, p) == _sklearn_r_at_p(labels, scores, p), (seed, p)
        checked += 1
    assert checked > 35


def test_recall_at_precision_hand_cases():
    # perfect separation -> every positive above every negative: recall 1 at precision 1
    assert recall_at_precision([1, 1, 0, 0.5], [0.9, 0.8, 0.2, 0.1]) == 1.0
    # no threshold reaches 0.9: the top pair is a negative, then precision is at most 2/3
    assert recall_at_precision([0, 1, 1, 0], [0.9, 0.8, 0.7, 0.1]) == 0.0
    # label 0.5 is a negative for R@P
    assert recall_at_precision([0.5, 1], [0.9, 0.8]) == 0.0
    # ties enter together: one positive and one negative tied -> precision 0.5 only
    assert recall_at_precision([1, 0], [0.5, 0.5]) == 0.0
    assert recall_at_precision([1, 0], [0.5, 0.5], min_precision=0.5) == 1.0
    # precision exactly 0.9 qualifies (>=): 9 positives and 1 negative all tied
    assert recall_at_precision([1] * 9 + [0], [0.3] * 10) == 1.0
    # the highest recall wins, not the first threshold reaching the precision
    assert recall_at_precision([1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0], np.linspace(1, 0, 13)) == 1.0
    # no positives: recall undefined
    assert math.isnan(recall_at_precision([0, 0.5], [0.3, 0.2]))
    assert math.isnan(recall_at_precision([], []))


def test_recall_at_precision_rejects_bad_input():
    with pytest.raises(ValueError, match="differ in length"):
        recall_at_precision([1, 0], [0.5])
    with pytest.raises(ValueError, match="non-finite"):
        recall_at_precision([1, 0], [0.5, np.nan])
    with pytest.raises(ValueError, match="min_precision"):
        recall_at_precision([1, 0], [0.5, 0.4], min_precision=0.0)


def test_precision_recall_points_groups_ties():
    thresholds, precision, recall, n_pos = precision_recall_points([1, 0, 1, 0], [0.9, 0.5, 0.5, 0.1])
    np.testing.assert_array_equal(thresholds, [0.9, 0.5, 0.1])
    np.testing.assert_allclose(precision, [1.0, 2 / 3, 0.5])
    np.testing.assert_allclose(recall, [0.5, 1.0, 1.0])
    assert n_pos == 2


@pytest.mark.parametrize("k", [1, 3, 5, 10])
def test_ndcg_matches_sklearn_with_ties(k):
    checked = 0
    for seed in range(80):
        gains, scores = _random_pairs(seed)
        if not (gains > 0).any():
            continue
        expected = ndcg_score(gains[None, :], scores[None, :], k=k)
        assert ndcg_at_k(gains, scores, k) == pytest.approx(expected, rel=1e-12, abs=0), seed
        checked += 1
    assert checked > 60


def test_ndcg_hand_cases():
    assert ndcg_at_k([1, 0.5, 0], [0.9, 0.5, 0.1]) == 1.0  # perfect ranking
    assert math.isnan(ndcg_at_k([0, 0, 0], [0.9, 0.5, 0.1]))  # no positive gain
    # a positive tied with a negative at ranks 1-2: average gain 0.5 over both discounts
    assert ndcg_at_k([1, 0], [0.5, 0.5]) == pytest.approx(0.5 * (1 + 1 / math.log2(3)))
    # the positive ranked second: DCG = 1/log2(3), IDCG = 1
    assert ndcg_at_k([0, 1], [0.9, 0.1]) == pytest.approx(1 / math.log2(3))
    # beyond k the positive earns nothing
    assert ndcg_at_k([0, 1], [0.9, 0.1], k=1) == 0.0
    # a single judged positive pair is a perfect ranking
    assert ndcg_at_k([0.5], [0.3]) == 1.0
    # graded gains: ideal is [1, 0.5]; ranking [0.5, 1]
    idcg = 1 + 0.5 / math.log2(3)
    assert ndcg_at_k([0.5, 1], [0.9, 0.1]) == pytest.approx((0.5 + 1 / math.log2(3)) / idcg)


def test_ndcg_does_not_depend_on_input_order_under_ties():
    gains, scores = _random_pairs(3, n=30)
    perm = np.random.default_rng(1).permutation(30)
    assert ndcg_at_k(gains, scores) == pytest.approx(ndcg_at_k(gains[perm], scores[perm]), rel=1e-12)


def test_ndcg_rejects_bad_input():
    with pytest.raises(ValueError, match="non-negative"):
        ndcg_at_k([-1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="k must be"):
        ndcg_at_k([1, 0], [0.1, 0.2], k=0)


def _random_queries(seed: int, n_queries: int = 80):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 25, n_queries)
    qids = np.repeat(np.array([f"q{i:04d}" for i in range(n_queries)]), sizes)
    gains, scores = _random_pairs(seed, n=len(qids))
    perm = rng.permutation(len(qids))  # rows of one query need not be contiguous
    return qids[perm], gains[perm], scores[perm]


@pytest.mark.parametrize("seed", range(3))
def test_per_query_ndcg_matches_loop_and_sklearn(seed):
    qids, gains, scores = _random_queries(seed)
    uq, values = per_query_ndcg_at_k(qids, gains, scores, k=5)
    assert list(uq) == sorted(set(qids))
    for q, v in zip(uq, values, strict=True):
        m = qids == q
        ref = ndcg_at_k(gains[m], scores[m], 5)
        if math.isnan(ref):
            assert math.isnan(v)
            continue
        assert v == pytest.approx(ref, rel=1e-12)
        if m.sum() > 1:  # sklearn refuses single-document queries
            assert v == pytest.approx(ndcg_score(gains[m][None], scores[m][None], k=5), rel=1e-12)


def test_mean_ndcg_by_hand_with_a_query_count():
    """What the reward-model bootstrap reports: the mean over queries with a positive, and their count."""
    # query a: gains [1, 0, 0.5] ranked by score -> [0.5, 1, 0]; query b has no positive
    res = mean_ndcg_at_k(["a", "a", "a", "b"], [1, 0, 0.5, 0], [0.2, 0.1, 0.9, 0.3])
    dcg = 0.5 / math.log2(2) + 1 / math.log2(3)
    idcg = 1 / math.log2(2) + 0.5 / math.log2(3)
    assert (res.n_queries, res.n_excluded) == (1, 1) and res.mean == pytest.approx(dcg / idcg)


def test_mean_ndcg_excludes_and_counts_queries_without_positive():
    qids = ["a", "a", "b", "b", "c", "c"]
    gains = [1, 0, 0, 0, 0.5, 0]  # b has no positive; c only a 0.5 and is kept
    scores = [0.9, 0.1, 0.5, 0.4, 0.1, 0.9]
    res = mean_ndcg_at_k(qids, gains, scores)
    assert (res.n_queries, res.n_excluded) == (2, 1)
    assert res.mean == pytest.approx((1.0 + 1 / math.log2(3)) / 2)
    empty = mean_ndcg_at_k([], [], [])
    assert math.isnan(empty.mean) and empty.n_queries == 0


def test_per_query_rejects_length_mismatch():
    with pytest.raises(ValueError, match="query_ids"):
        per_query_ndcg_at_k(["a"], [1, 0], [0.1, 0.2])


def test_mean_reward_matches_sklearn_mae():
    from sklearn.metrics import mean_absolute_error

    rng = np.random.default_rng(3)
    labels, scores = rng.choice([0.0, 0.5, 1.0], 200), rng.random(200)
    assert mean_reward(labels, scores) == pytest.approx(-mean_absolute_error(labels, scores))
    assert mean_reward([1.0, 0.0], [1.0, 0.0]) == 0.0 and np.isnan(mean_reward([], []))


def test_min_judged_leaves_single_pair_queries_out():
    qids, gains, scores = ["a", "b", "b"], [1.0, 1.0, 0.0], [0.1, 0.2, 0.9]
    _, values = per_query_ndcg_at_k(qids, gains, scores)
    assert values[0] == 1.0  # one judged product ranks first whatever its score
    _, values = per_query_ndcg_at_k(qids, gains, scores, min_judged=2)
    assert math.isnan(values[0]) and values[1] == pytest.approx(1 / math.log2(3))
    summary = mean_ndcg_at_k(qids, gains, scores, min_judged=2)
    assert (summary.n_queries, summary.n_excluded) == (1, 1)
    with pytest.raises(ValueError, match="min_judged"):
        per_query_ndcg_at_k(qids, gains, scores, min_judged=0)


def test_one_definition_for_the_library_and_evaluation():
    """The gate, the reward-model bootstrap and the offline table share these functions (no copies)."""
    import relsum.evaluation.bootstrap as bootstrap
    import relsum.evaluation.metrics as old_path
    import relsum.metrics.ranking as metrics
    import relsum.scoring.fidelity as fidelity
    import relsum.scoring.reward_model as reward_model

    for name in old_path.__all__:
        assert getattr(old_path, name) is getattr(metrics, name)
    assert fidelity.mean_ndcg_at_k is reward_model.mean_ndcg_at_k is metrics.mean_ndcg_at_k
    assert bootstrap.per_query_ndcg_at_k is metrics.per_query_ndcg_at_k


def test_metrics_module_needs_only_numpy():
    """Pure functions: importing them must not pull pandas, scipy or torch into a process."""
    import subprocess
    import sys

    code = ("import sys, relsum.metrics.ranking; "
            "print(sorted(m for m in ('pandas', 'scipy', 'torch', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         check=True)
    assert out.stdout.strip() == "[]"
