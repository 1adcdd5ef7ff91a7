"""Held-out reward of a policy: does the trained adapter beat the reference policy?

For held-out (query, product, label) pairs, each policy writes one greedy summary per product (the
deployed setting) and earns the paper's reward -|r(q,[t;s]) - l| from the one scorer. The paired
difference (adapter minus reference) gets a 95% bootstrap interval over products, because one
summary serves all of a product's queries and pairs of a product are not independent.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)


def summarize_products(model, tokenizer, products: pd.DataFrame, policy, batch_size: int = 64) -> pd.Series:
    """product_id -> greedy summary for a frame with product_id, title, text (one row per product).

    ``policy`` is the :class:`~relsum.training.config.PolicyConfig` the model was trained with: its prompt
    and summary token caps apply here too, so evaluation sees the prompts training saw.
    """
    from relsum.training.generate import generate_summaries

    texts = generate_summaries(model, tokenizer, products["title"].tolist(), products["text"].tolist(),
                               max_new_tokens=policy.max_summary_tokens, batch_size=batch_size, do_sample=False,
                               max_prompt_tokens=policy.max_prompt_tokens,
                               use_chat_template=policy.use_chat_template)
    return pd.Series(texts, index=products["product_id"].to_numpy(), name="summary")


def pair_rewards(pairs: pd.DataFrame, summaries: pd.Series, scorer) -> np.ndarray:
    """-|r(q,[t;s]) - l| for each pair, with s the pair's product summary."""
    texts = pairs["product_id"].map(summaries).fillna("").tolist()
    r = scorer.score(pairs["query"].tolist(), pairs["title"].tolist(), texts)
    return -np.abs(r - pairs["label"].to_numpy(dtype=np.float32))


def paired_product_bootstrap(product_ids: np.ndarray, diff: np.ndarray, n_boot: int = 1000,
                             seed: int = 0) -> tuple[float, float, float]:
    """Mean of per-pair ``diff`` with a 95% CI from resampling products (clusters) with replacement."""
    codes, uniques = pd.factorize(product_ids)
    sums = np.bincount(codes, weights=diff, minlength=len(uniques))
    counts = np.bincount(codes, minlength=len(uniques)).astype(float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(uniques), size=(n_boot, len(uniques)))
    boot = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return float(diff.mean()), float(lo), float(hi)


def compare_policies(pairs: pd.DataFrame, reference: pd.Series, trained: pd.Series, scorer,
                     n_boot: int = 1000, seed: int = 0) -> dict:
    """Mean held-out reward of both policies and the paired difference with its CI."""
    r_ref = pair_rewards(pairs, reference, scorer)
    r_new = pair_rewards(pairs, trained, scorer)
    diff = r_new - r_ref
    mean, lo, hi = paired_product_bootstrap(pairs["product_id"].to_numpy(), diff, n_boot=n_boot, seed=seed)
    return {
        "heldout_pairs": int(len(pairs)), "heldout_products": int(pairs["product_id"].nunique()),
        "reward_reference": float(r_ref.mean()), "reward_trained": float(r_new.mean()),
        "reward_diff": mean, "reward_diff_ci95": [lo, hi],
        "trained_better_pairs": int((diff > 0).sum()), "trained_worse_pairs": int((diff < 0).sum()),
    }
