"""Pure ranking and calibration metrics over numpy arrays (no I/O, no pandas): the library's one definition.

The two metrics of the paper's Table 3 (Yadav et al., 2025, "ReLSum"), plus the training reward:

* ``R@90P`` (:func:`recall_at_precision`): a pair-level, threshold metric over all judged pairs;
  only label 1 counts as positive (label 0.5 and 0 are negatives).
* ``NDCG@5`` (:func:`ndcg_at_k`, :func:`per_query_ndcg_at_k`, :func:`mean_ndcg_at_k`): a per-query
  ranking metric with the graded label (1 / 0.5 / 0) as linear gain, averaged over queries.
* the reward ``-|r - l|`` (:func:`mean_reward`) that GRPO maximises, as a calibration metric.

They live in the library, not in ``relsum.evaluation``, because the scorer's fidelity gate and the
reward-model bootstrap need the same definitions as the offline table: one tie rule everywhere.
``relsum.evaluation`` builds the bootstrap intervals, offline tables and reports on top of them.

Conventions are chosen so that the values equal scikit-learn's (``precision_recall_curve`` and
``ndcg_score`` with ``ignore_ties=False``) on any input where sklearn is defined; the tests check
that on random data with ties. Where sklearn returns 0 for an undefined case (a query with no
positive gain) these functions return ``nan`` so that callers exclude it explicitly and count it.
Each docstring gives the formula and its source, as ranx does.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np

logger = logging.getLogger(__name__)


def _as_float_1d(x, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains {int((~np.isfinite(arr)).sum())} non-finite value(s)")
    return arr


def _check_pairs(labels, scores, labels_name: str = "labels") -> tuple[np.ndarray, np.ndarray]:
    y = _as_float_1d(labels, labels_name)
    s = _as_float_1d(scores, "scores")
    if y.shape != s.shape:
        raise ValueError(f"{labels_name} and scores differ in length: {y.shape[0]} != {s.shape[0]}")
    return y, s


def precision_recall_points(labels, scores, positive_label: float = 1.0):
    """Precision and recall at every distinct score threshold, highest threshold first.

    A pair is predicted positive when ``score >= threshold``, so tied scores enter together;
    ``precision = tp / (tp + fp)``, ``recall = tp / P`` with ``P`` the number of pairs whose label
    equals ``positive_label`` (every other label is a negative). Returns
    ``(thresholds, precision, recall, n_positive)``; ``recall`` is all-nan when ``P == 0``.
    Unlike sklearn, no artificial ``(recall 0, precision 1)`` end point is appended.

    Reference: precision and recall of a ranked list cut at a threshold, Manning, Raghavan &
    Schütze (2008), *Introduction to Information Retrieval*, §8.3-8.4.
    """
    y, s = _check_pairs(labels, scores)
    pos = y == positive_label
    order = np.argsort(s, kind="stable")[::-1]
    s_sorted = s[order]
    tp = np.cumsum(pos[order], dtype=np.float64)
    n_seen = np.arange(1, len(s) + 1, dtype=np.float64)
    # the last index of each group of equal scores is where that threshold's counts are complete
    last = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True]) if len(s) else np.array([], int)
    tp_t = tp[last]
    precision = tp_t / n_seen[last]
    n_pos = int(pos.sum())
    recall = tp_t / n_pos if n_pos else np.full(len(last), np.nan)
    return s_sorted[last], precision, recall, n_pos


def recall_at_precision(labels, scores, min_precision: float = 0.9, positive_label: float = 1.0) -> float:
    """R@P: the highest recall over thresholds whose precision is ``>= min_precision``.

    ``R@90P = max{ recall(t) : precision(t) >= 0.9 }`` over the distinct score values ``t``, with
    ``score >= t`` predicted positive (ties enter together), ``label == positive_label`` positive
    and every other label (0.5 included) negative, over all judged pairs at once (not per query).

    Returns 0.0 when no threshold reaches ``min_precision`` and ``nan`` when there are no
    positives (recall is undefined; sklearn would warn and return nan recalls too).
    Equals ``max(recall[precision >= p])`` of ``sklearn.metrics.precision_recall_curve``.

    Reference: Yadav et al. (2025), ReLSum, Table 3 (R@90P, recall at 90 % precision of the
    relevance classifier over all judged pairs); precision/recall as in :func:`precision_recall_points`.
    """
    if not 0.0 < min_precision <= 1.0:
        raise ValueError(f"min_precision must be in (0, 1], got {min_precision}")
    _, precision, recall, n_pos = precision_recall_points(labels, scores, positive_label)
    if n_pos == 0:
        return float("nan")
    ok = precision >= min_precision
    return float(recall[ok].max()) if ok.any() else 0.0


def _discounts(n: int, k: int) -> np.ndarray:
    """``1 / log2(rank + 1)`` for 1-based ranks ``1..n``, zero beyond rank ``k``."""
    disc = 1.0 / np.log2(np.arange(n, dtype=np.float64) + 2.0)
    disc[k:] = 0.0
    return disc


def ndcg_at_k(gains, scores, k: int = 5) -> float:
    """NDCG@k of one query with linear gains and tie-averaged DCG.

    ``DCG@k = sum_r gain_r / log2(r + 1)`` over ranks ``r = 1..k`` by descending score;
    ``IDCG@k`` is the same sum over the query's judged gains sorted descending; NDCG = DCG / IDCG.

    Ties: a group of pairs with equal scores occupying ranks ``a..b`` contributes
    ``mean(gain of the group) * sum_{r=a..b, r<=k} 1/log2(r+1)``, i.e. the expected DCG over all
    orderings of the tie (sklearn's ``ndcg_score(ignore_ties=False)``), so the value does not
    depend on the input order. Returns ``nan`` when no gain is positive (IDCG = 0; sklearn
    returns 0 there) and for an empty query.

    References: Järvelin & Kekäläinen (2002), "Cumulated gain-based evaluation of IR techniques",
    ACM TOIS 20(4) (DCG with ``log2(r + 1)`` discount, linear gain); McSherry & Najork (2008),
    "Computing information retrieval performance measures efficiently in the presence of tied
    scores", ECIR (the tie-averaged DCG). NDCG@5 is the paper's second Table 3 metric.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    g, s = _check_pairs(gains, scores, "gains")
    if (g < 0).any():
        raise ValueError("gains must be non-negative")
    if not (g > 0).any():
        return float("nan")
    disc = _discounts(len(g), k)
    idcg = float(np.sort(g)[::-1] @ disc)
    # unique over -s sorts the tie groups by descending score
    _, inv, counts = np.unique(-s, return_inverse=True, return_counts=True)
    mean_gain = np.bincount(inv, weights=g, minlength=len(counts)) / counts
    ends = np.cumsum(counts)
    cum_disc = np.r_[0.0, np.cumsum(disc)]
    disc_per_group = cum_disc[ends] - cum_disc[ends - counts]
    return float(mean_gain @ disc_per_group) / idcg


def per_query_ndcg_at_k(query_ids, gains, scores, k: int = 5,
                        min_judged: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """NDCG@k of every query at once: ``(unique_query_ids, values)``, sorted by query id.

    Same definition and tie convention as :func:`ndcg_at_k` (the tests check equality);
    ``values`` is ``nan`` for queries without a positive gain and for queries with fewer than
    ``min_judged`` judged pairs. ``min_judged=2`` is what the offline table uses: a query with one
    judged product (ESCI-style exports) has NDCG = 1 whatever the scores, so it compares nothing. Vectorised:
    one lexsort by (query, score desc) and one by (query, gain desc), then ``reduceat`` / ``bincount`` over
    tie groups and queries -- O(n log n), no Python loop over queries.

    References: as :func:`ndcg_at_k` (Järvelin & Kekäläinen 2002; McSherry & Najork 2008).
    """
    if k < 1 or min_judged < 1:
        raise ValueError(f"k and min_judged must be >= 1, got {k}, {min_judged}")
    g, s = _check_pairs(gains, scores, "gains")
    qids = np.asarray(query_ids)
    if qids.shape != g.shape:
        raise ValueError(f"query_ids and gains differ in length: {qids.shape} != {g.shape}")
    if (g < 0).any():
        raise ValueError("gains must be non-negative")
    uq, qcode = np.unique(qids, return_inverse=True)
    qcode = qcode.reshape(-1)
    n, n_q = len(g), len(uq)
    if n == 0:
        return uq, np.array([], dtype=np.float64)

    order = np.lexsort((-s, qcode))
    q_sorted = qcode[order]
    s_sorted = s[order]
    starts = np.searchsorted(q_sorted, np.arange(n_q))
    rank = np.arange(n) - starts[q_sorted]  # 0-based rank within the query
    disc = np.where(rank < k, 1.0 / np.log2(rank + 2.0), 0.0)

    # tie groups: a new group starts where the query or the score changes
    new_group = np.r_[True, (q_sorted[1:] != q_sorted[:-1]) | (s_sorted[1:] != s_sorted[:-1])]
    gstart = np.flatnonzero(new_group)
    counts = np.diff(np.r_[gstart, n])
    gain_sum = np.add.reduceat(g[order], gstart)
    disc_sum = np.add.reduceat(disc, gstart)
    dcg = np.bincount(q_sorted[gstart], weights=gain_sum / counts * disc_sum, minlength=n_q)

    ideal_order = np.lexsort((-g, qcode))  # same query layout, so rank/disc are reused
    idcg = np.bincount(q_sorted, weights=g[ideal_order] * disc, minlength=n_q)

    values = np.full(n_q, np.nan)
    ok = (idcg > 0) & (np.bincount(qcode, minlength=n_q) >= min_judged)
    values[ok] = dcg[ok] / idcg[ok]
    return uq, values


class NDCGSummary(NamedTuple):
    """Mean NDCG@k over the queries with a defined value, and how many were used / excluded."""

    mean: float
    n_queries: int
    n_excluded: int


def mean_ndcg_at_k(query_ids, gains, scores, k: int = 5, min_judged: int = 1) -> NDCGSummary:
    """Mean of :func:`per_query_ndcg_at_k` over queries with a positive gain (and ``min_judged`` pairs).

    Queries whose gains are all zero have no defined NDCG; they are excluded from the mean and
    counted in ``n_excluded`` (a query with only 0.5 labels is kept), as are queries with fewer
    than ``min_judged`` judged pairs. ``mean`` is ``nan`` when no query is left:

    ``mean NDCG@k = (1 / |Q'|) * sum_{q in Q'} NDCG@k(q)``, ``Q'`` = queries with a defined value.

    References: as :func:`ndcg_at_k` (Järvelin & Kekäläinen 2002; McSherry & Najork 2008).
    """
    _, values = per_query_ndcg_at_k(query_ids, gains, scores, k, min_judged)
    ok = ~np.isnan(values)
    n_used = int(ok.sum())
    mean = float(values[ok].mean()) if n_used else float("nan")
    return NDCGSummary(mean, n_used, int(len(values) - n_used))


def mean_reward(labels, scores) -> float:
    """The training reward on judged pairs: ``mean(-|score - label|)`` (0 = scores equal the labels).

    A calibration metric, unlike the two ranking metrics: GRPO optimises it, so it shows whether
    summaries move the scorer towards human grades or only towards the training (proxy) labels.
    ``nan`` for no pairs. Equals ``-sklearn.metrics.mean_absolute_error(labels, scores)``:

    ``mean_reward = -(1 / n) * sum_i |score_i - label_i|``.

    Reference: Yadav et al. (2025), ReLSum, the GRPO reward ``-|r(q, [t; s]) - l|`` of a summary ``s``.
    """
    labels, scores = _check_pairs(labels, scores)
    return float(-np.abs(scores - labels).mean()) if len(labels) else float("nan")


def per_query_pairwise_accuracy(query_ids, labels, scores, positive_label: float = 1.0,
                                negative_label: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Correctly ordered (positive, negative) product pairs per query: ``(unique_query_ids, correct, pairs)``.

    Within a query ``q`` with ``P_q`` products labelled ``positive_label`` and ``N_q`` labelled
    ``negative_label`` (other labels, e.g. 0.5, take no part), ``pairs_q = P_q * N_q`` and

    ``correct_q = sum_{i pos, j neg} ([s_i > s_j] + 0.5 [s_i = s_j])``,

    the Mann-Whitney U statistic of the query, computed from mid-ranks as
    ``U_q = sum_{i pos} midrank_i - P_q (P_q + 1) / 2`` (one lexsort, no loop over queries).
    ``correct_q / pairs_q`` is the query's AUC. Sorted by query id like :func:`per_query_ndcg_at_k`.

    Why a pair-level measure: a query with ``P_q N_q`` comparable pairs contributes that many
    decisions instead of one NDCG value, so a change of the scorer's ordering is seen with far
    fewer queries.

    References: Mann & Whitney (1947); Hanley & McNeil (1982), "The meaning and use of the area under
    a ROC curve", Radiology 143 (U / (P N) = AUC, ties counted one half); Joachims (2002),
    "Optimizing search engines using clickthrough data", KDD (pairwise ordering accuracy within a query).
    """
    y, s = _check_pairs(labels, scores)
    qids = np.asarray(query_ids)
    if qids.shape != y.shape:
        raise ValueError(f"query_ids and labels differ in length: {qids.shape} != {y.shape}")
    uq, qcode = np.unique(qids, return_inverse=True)
    qcode = qcode.reshape(-1)
    n_q = len(uq)
    pos, neg = y == positive_label, y == negative_label
    n_pos = np.bincount(qcode, weights=pos, minlength=n_q)
    n_neg = np.bincount(qcode, weights=neg, minlength=n_q)
    keep = pos | neg
    q, sk, pk = qcode[keep], s[keep], pos[keep]
    order = np.lexsort((sk, q))
    q_sorted, s_sorted, p_sorted = q[order], sk[order], pk[order]
    n = len(q_sorted)
    if n == 0:
        return uq, np.zeros(n_q), n_pos * n_neg
    starts = np.searchsorted(q_sorted, np.arange(n_q))
    rank = np.arange(n) - starts[q_sorted]  # 0-based rank within the query, ascending score
    new_group = np.r_[True, (q_sorted[1:] != q_sorted[:-1]) | (s_sorted[1:] != s_sorted[:-1])]
    group = np.cumsum(new_group) - 1
    gstart = np.flatnonzero(new_group)
    counts = np.diff(np.r_[gstart, n])
    midrank = rank[gstart][group] + (counts[group] - 1) / 2.0 + 1.0  # 1-based mid-rank
    rank_sum = np.bincount(q_sorted, weights=np.where(p_sorted, midrank, 0.0), minlength=n_q)
    correct = rank_sum - n_pos * (n_pos + 1) / 2.0
    return uq, correct, n_pos * n_neg


def pairwise_accuracy(query_ids, labels, scores, positive_label: float = 1.0,
                      negative_label: float = 0.0) -> float:
    """Share of within-query (positive, negative) product pairs the scores order correctly, ties 0.5.

    ``pairwise_accuracy = sum_q correct_q / sum_q pairs_q`` (:func:`per_query_pairwise_accuracy`):
    every comparable product pair counts once, wherever its query is (a micro average, as the training
    reward weights every judged pair once). Pairs across queries are never compared. ``nan`` when no
    query has both a positive and a negative.

    References: as :func:`per_query_pairwise_accuracy` (Hanley & McNeil 1982; Joachims 2002).
    """
    _, correct, pairs = per_query_pairwise_accuracy(query_ids, labels, scores, positive_label, negative_label)
    total = float(pairs.sum())
    return float(correct.sum()) / total if total else float("nan")
