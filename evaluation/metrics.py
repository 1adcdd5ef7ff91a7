"""The metric functions now live in :mod:`relsum.metrics.ranking`; this module keeps the old import path
working.

``relsum.evaluation`` holds what is built on top of them (bootstrap intervals, offline tables,
reports); new code imports the metrics from :mod:`relsum.metrics.ranking`.
"""

from relsum.metrics.ranking import (
    NDCGSummary,
    mean_ndcg_at_k,
    mean_reward,
    ndcg_at_k,
    per_query_ndcg_at_k,
    precision_recall_points,
    recall_at_precision,
)

__all__ = ["NDCGSummary", "mean_ndcg_at_k", "mean_reward", "ndcg_at_k", "per_query_ndcg_at_k",
           "precision_recall_points", "recall_at_precision"]
