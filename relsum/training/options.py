"""GRPO options beyond the paper, each one switch under ``TrainConfig.options`` (all off = the paper).

* ``product_reward``: one prompt per product; a completion earns the mean of ``-|r(q,[t;s]) - l|``
  over the product's training queries (at most ``product_max_queries``, a seeded sample), because
  the deployed summary serves all of them. Query and label lists travel as dataset columns.
* ``group_filter``: a group of G completions whose reward std is below ``group_min_std`` carries no
  signal, but TRL divides by ``std + 1e-4``, so float noise of 1e-4..1e-3 becomes advantages near +-1
  (pure noise, full weight). The filter hands such a group identical rewards, so its advantages are
  exactly 0, and logs ``group_filter/dropped_frac`` through TRL's ``log_metric`` (no TRL fork).
  The shared value is the group mean rounded to a 2**-10 grid: G copies of it sum exactly in
  float32, so TRL's ``reward - mean`` is exactly 0.0 (a raw float mean could leave 1 ulp of noise).
  Groups are TRL's contiguous blocks of ``num_generations`` completions. Dropping (not resampling)
  keeps the step's batch shape; resampling would need TRL's generation loop (a fork).
* ``top_entropy_quantile``: TRL's forking-token mask (train on the top-rho entropy tokens only).
* ``variance_credit``: token weights from cross-rollout disagreement (see ``credit``).
* ``grounding_weight``: subtract ``weight * unsupported_fraction`` (see ``grounding``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from relsum.training.config import OptionsConfig

logger = logging.getLogger(__name__)

GRID = 2.0 ** -10


def _product_seed(seed: int, product_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{product_id}".encode()).digest()[:8], "big")


def product_rows(df: pd.DataFrame, max_queries: int = 0, seed: int = 0) -> pd.DataFrame:
    """One row per product (first-seen order): title, text and the lists ``queries`` / ``labels``.

    With ``max_queries`` > 0 a product with more queries keeps a sample of that many, drawn with a
    generator seeded by (seed, product_id), so the sample does not depend on row order.
    """
    rows = []
    for pid, group in df.groupby("product_id", sort=False):
        queries, labels = group["query"].astype(str).tolist(), group["label"].astype(float).tolist()
        # sample from query-sorted order: row order must not matter
        if max_queries and len(queries) > max_queries:
            order = sorted(range(len(queries)), key=lambda i: (queries[i], labels[i]))
            queries, labels = [queries[i] for i in order], [labels[i] for i in order]
            pick = np.sort(np.random.default_rng(_product_seed(seed, str(pid))).choice(
                len(queries), size=max_queries, replace=False))
            queries, labels = [queries[i] for i in pick], [labels[i] for i in pick]
        rows.append({"product_id": str(pid), "title": str(group["title"].iloc[0]),
                     "text": str(group["text"].iloc[0]), "queries": queries, "labels": labels})
    return pd.DataFrame(rows)


def product_subset(n_products: int, size: int, seed: int) -> np.ndarray:
    """Sorted row indices of a seeded draw of ``size`` of ``n_products`` products (all of them, in order,
    when ``size`` is 0 or at least ``n_products``): the products a sampling round works on."""
    if size <= 0 or size >= n_products:
        return np.arange(n_products)
    return np.sort(np.random.default_rng(seed).choice(n_products, size=size, replace=False))


def filter_groups(rewards: Sequence[float], num_generations: int,
                  min_std: float) -> tuple[np.ndarray, np.ndarray]:
    """(rewards with degenerate groups flattened, bool per group: dropped).

    A group is degenerate when its sample std (ddof=1, as TRL's ``nanstd``) is below ``min_std``;
    its members all get the group mean rounded to the 2**-10 grid (exact in float32 sums).
    """
    r = np.asarray(rewards, dtype=np.float64)
    if num_generations < 2 or r.size % num_generations:
        raise ValueError(f"{r.size} rewards do not split into groups of num_generations={num_generations}")
    groups = r.reshape(-1, num_generations).copy()
    dropped = groups.std(axis=1, ddof=1) < min_std
    if dropped.any():
        groups[dropped] = (np.round(groups[dropped].mean(axis=1) / GRID) * GRID)[:, None]
    return groups.reshape(-1), dropped


class SummaryReward:
    """The TRL reward function with the options applied: relevance (pair or product level) minus the
    grounding penalty, then the group filter. Same timing stats as ``RelevanceReward``.
    """

    __name__ = "relevance"

    def __init__(self, scorer: Any, options: OptionsConfig, num_generations: int) -> None:
        self.scorer, self.options, self.num_generations = scorer, options, num_generations
        self.total_seconds, self.calls, self.rows = 0.0, 0, 0
        self.dropped_groups, self.seen_groups = 0, 0

    def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] | None = None,
                 log_metric: Callable[[str, float], None] | None = None, **cols: Any) -> list[float]:
        from relsum.policy.reward import completion_text, product_relevance_rewards, relevance_rewards
        from relsum.policy.served import served_summary
        from relsum.training.grounding import unsupported_fractions

        if completions is None or cols.get("title") is None:
            raise ValueError("SummaryReward needs completions and the title column")
        start = time.perf_counter()
        opt = self.options
        titles = list(cols["title"])
        summaries = [served_summary(completion_text(c), title=t)
                     for c, t in zip(completions, titles, strict=True)]
        if opt.product_reward:
            if cols.get("queries") is None or cols.get("labels") is None:
                raise ValueError("product_reward needs the queries and labels columns (one list per product)")
            rewards = product_relevance_rewards(self.scorer, cols["queries"], titles, summaries,
                                                cols["labels"])
        else:
            if cols.get("query") is None or cols.get("label") is None:
                raise ValueError("SummaryReward needs the query and label columns")
            rewards = relevance_rewards(self.scorer, cols["query"], titles, summaries, cols["label"])
        if opt.grounding_weight > 0:
            if cols.get("text") is None:
                raise ValueError("grounding_weight > 0 needs the text column")
            unsupported = unsupported_fractions(summaries, titles, cols["text"])
            rewards = rewards - opt.grounding_weight * unsupported
            if log_metric is not None:
                log_metric("grounding/groundedness", float(1.0 - unsupported.mean()))
        if opt.group_filter:
            rewards, dropped = filter_groups(rewards, self.num_generations, opt.group_min_std)
            self.dropped_groups += int(dropped.sum())
            self.seen_groups += int(dropped.size)
            if log_metric is not None:
                log_metric("group_filter/dropped_frac", float(dropped.mean()))
        self.total_seconds += time.perf_counter() - start
        self.calls += 1
        self.rows += len(summaries)
        return [float(x) for x in rewards]

    def stats(self) -> dict[str, float]:
        return {"reward_seconds": self.total_seconds, "reward_calls": self.calls, "reward_rows": self.rows,
                "dropped_groups": self.dropped_groups, "seen_groups": self.seen_groups}
