"""The ReLSum reward: ``-|r(q, [t; s]) - l|`` from the frozen cross-encoder (paper, Eq. 1).

One batched scorer call per training step covers all completions of the step; the scorer's own
dedupe cache absorbs repeated (query, title, summary) triples, which are common within a GRPO group.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from relsum.policy.served import served_summary

logger = logging.getLogger(__name__)


def completion_text(completion: Any) -> str:
    """A completion as plain text: TRL passes strings, or message lists for conversational prompts."""
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content") or "")
    if isinstance(completion, Sequence):
        parts = [m.get("content") or "" for m in completion if isinstance(m, dict)
                 and m.get("role") == "assistant"]
        if not parts:
            parts = [m.get("content") or "" for m in completion if isinstance(m, dict)]
        return "".join(str(p) for p in parts)
    raise TypeError(f"unsupported completion type {type(completion).__name__}")


def relevance_scores(scorer: Any, queries: Sequence[str], titles: Sequence[str],
                     summaries: Sequence[str]) -> np.ndarray:
    """``r(q, [t; s])`` per row (float64); an empty summary is scored as the title alone."""
    if len(titles) != len(queries) or len(summaries) != len(queries):
        raise ValueError("queries, titles and summaries must have the same length")
    return np.asarray(scorer.score(list(queries), list(titles), [s or None for s in summaries]),
                      dtype=np.float64)


def rewards_from_scores(scores: np.ndarray, labels: Sequence[float]) -> np.ndarray:
    """``-|r - l|`` for scores ``r`` (any shape whose last axis is the rows) and labels ``l`` in [0, 1]."""
    labels_arr = np.asarray(labels, dtype=np.float64)
    if labels_arr.ndim != 1 or np.shape(scores)[-1] != len(labels_arr):
        raise ValueError("queries, titles, summaries and labels must have the same length")
    if np.isnan(labels_arr).any() or (labels_arr < 0).any() or (labels_arr > 1).any():
        raise ValueError("labels must be in [0, 1]")
    return -np.abs(np.asarray(scores, dtype=np.float64) - labels_arr)


def relevance_rewards(scorer: Any, queries: Sequence[str], titles: Sequence[str], summaries: Sequence[str],
                      labels: Sequence[float]) -> np.ndarray:
    """``-|r(q, [t; s]) - l|`` per row; an empty summary is scored as the title alone."""
    if len(labels) != len(queries):
        raise ValueError("queries, titles, summaries and labels must have the same length")
    rewards_from_scores(np.zeros(len(labels)), labels)  # label checks before the scorer runs
    return rewards_from_scores(relevance_scores(scorer, queries, titles, summaries), labels)


class RelevanceReward:
    """TRL reward function (``reward_funcs=[RelevanceReward(scorer)]``) computing the ReLSum reward.

    TRL passes every dataset column as a keyword list aligned with ``completions``; this uses
    ``query``, ``title`` and ``label``. ``total_seconds`` / ``calls`` / ``rows`` record the time spent
    here, so a benchmark can report the reward's share of a training step.
    """

    __name__ = "relevance"

    def __init__(self, scorer: Any) -> None:
        self.scorer = scorer
        self.total_seconds = 0.0
        self.calls = 0
        self.rows = 0

    def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] | None = None,
                 query: Sequence[str] | None = None, title: Sequence[str] | None = None,
                 label: Sequence[float] | None = None, **kwargs: Any) -> list[float]:
        if completions is None or query is None or title is None or label is None:
            raise ValueError("RelevanceReward needs completions and the query, title and label columns")
        start = time.perf_counter()
        # the served string, title-aware: what served_summary strips (a restated title, labels) earns nothing
        summaries = [served_summary(completion_text(c), title=t)
                     for c, t in zip(completions, title, strict=True)]
        rewards = relevance_rewards(self.scorer, query, title, summaries, label)
        self.total_seconds += time.perf_counter() - start
        self.calls += 1
        self.rows += len(summaries)
        return rewards.tolist()

    def stats(self) -> dict[str, float]:
        return {"reward_seconds": self.total_seconds, "reward_calls": self.calls, "reward_rows": self.rows}

    def reset_stats(self) -> None:
        self.total_seconds, self.calls, self.rows = 0.0, 0, 0


def product_relevance_rewards(scorer: Any, queries: Sequence[Sequence[str]], titles: Sequence[str],
                              summaries: Sequence[str], labels: Sequence[Sequence[float]]) -> np.ndarray:
    """Product-level reward: for each summary, the mean of ``-|r(q, [t; s]) - l|`` over its product's queries.

    One summary serves every query of its product, so it is rewarded on all of them at once; the
    (query, title, summary) triples of the whole batch go to the scorer in one call.
    """
    if not len(queries) == len(titles) == len(summaries) == len(labels):
        raise ValueError("queries, titles, summaries and labels must have the same length")
    counts = [len(q) for q in queries]
    for i, (q, lab) in enumerate(zip(queries, labels, strict=True)):
        if len(q) == 0 or len(q) != len(lab):
            raise ValueError(f"row {i}: needs >= 1 query and one label per query "
                             f"(got {len(q)} and {len(lab)})")
    flat_q = [str(x) for q in queries for x in q]
    flat_t = [t for t, n in zip(titles, counts, strict=True) for _ in range(n)]
    flat_s = [s for s, n in zip(summaries, counts, strict=True) for _ in range(n)]
    flat_l = [float(x) for lab in labels for x in lab]
    per_pair = relevance_rewards(scorer, flat_q, flat_t, flat_s, flat_l)
    owner = np.repeat(np.arange(len(counts)), counts)
    return np.bincount(owner, weights=per_pair, minlength=len(counts)) / np.asarray(counts, dtype=np.float64)
