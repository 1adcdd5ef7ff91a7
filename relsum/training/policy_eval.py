"""Held-out reward of a policy: does the trained adapter beat the reference policy?

For held-out (query, product, label) pairs, each policy earns the paper's reward -|r(q,[t;s]) - l|
from the one scorer, measured two ways:

* greedy: one greedy summary per product, the deployed setting;
* sampled: the mean over k summaries sampled at the training temperature, an estimate of the policy's
  expected reward, which is the quantity GRPO maximises. One greedy string is a single draw of a noisy
  generator, so averaging k draws narrows the interval (about 1.8x at k=8 on the bundled sample).

The paired difference (adapter minus reference) gets a 95% bootstrap interval over products, because
one summary serves all of a product's queries and pairs of a product are not independent.
Per label value, the mean score r(q,[t;s]) of both policies and its shift are reported too
(:func:`label_shifts`), so a policy that raises the reward by lowering every score (most pairs have a
low label) is visible.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)


def _generate(model, tokenizer, products: pd.DataFrame, policy, batch_size: int, **sampling) -> list:
    """``generate_summaries`` over a product frame under the policy's prompt and summary caps."""
    from relsum.policy.generate import generate_summaries

    return generate_summaries(model, tokenizer, products["title"].tolist(), products["text"].tolist(),
                              max_new_tokens=policy.max_summary_tokens, batch_size=batch_size,
                              max_prompt_tokens=policy.max_prompt_tokens,
                              use_chat_template=policy.use_chat_template, prompt=policy.prompt, **sampling)


def summarize_products(model, tokenizer, products: pd.DataFrame, policy, batch_size: int = 64,
                       show_progress: bool | None = None) -> pd.Series:
    """product_id -> greedy summary for a frame with product_id, title, text (one row per product).

    ``policy`` is the :class:`~relsum.policy.config.PolicyConfig` the model was trained with: its prompt
    and summary token caps apply here too, so evaluation sees the prompts training saw.
    """
    texts = _generate(model, tokenizer, products, policy, batch_size, do_sample=False,
                      show_progress=show_progress)
    return pd.Series(texts, index=products["product_id"].to_numpy(), name="summary")


def sample_products(model, tokenizer, products: pd.DataFrame, policy, k: int, temperature: float,
                    seed: int = 0, batch_size: int = 32,
                    show_progress: bool | None = None) -> list[pd.Series]:
    """``k`` sampled summaries per product, as ``k`` Series product_id -> summary (seeded)."""
    outs = _generate(model, tokenizer, products, policy, batch_size, do_sample=True, temperature=temperature,
                     num_return_sequences=k, seed=seed, show_progress=show_progress)
    index = products["product_id"].to_numpy()
    return [pd.Series([o[j] for o in outs], index=index, name="summary") for j in range(k)]


def sample_pair_scores(pairs: pd.DataFrame, samples: list[pd.Series], scorer) -> np.ndarray:
    """``(k, n)`` array of r(q,[t;s]) for each pair and each of the k summaries s of its product (one scorer
    call)."""
    from relsum.policy.reward import relevance_scores

    k, n = len(samples), len(pairs)
    texts = [t for s in samples for t in pairs["product_id"].map(s).fillna("").tolist()]
    scores = relevance_scores(scorer, pairs["query"].tolist() * k, pairs["title"].tolist() * k, texts)
    return scores.reshape(k, n)


def expected_pair_rewards(pairs: pd.DataFrame, samples: list[pd.Series], scorer) -> np.ndarray:
    """Per pair, the mean of -|r(q,[t;s]) - l| over the sampled summaries s of its product (one scorer
    call)."""
    from relsum.policy.reward import rewards_from_scores

    return rewards_from_scores(sample_pair_scores(pairs, samples, scorer),
                               pairs["label"].tolist()).mean(axis=0)


def pair_rewards(pairs: pd.DataFrame, summaries: pd.Series, scorer) -> np.ndarray:
    """-|r(q,[t;s]) - l| for each pair, with s the pair's product summary."""
    return expected_pair_rewards(pairs, [summaries], scorer)


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


def label_shifts(pairs: pd.DataFrame, reference: np.ndarray, trained: np.ndarray, n_boot: int = 1000,
                 seed: int = 0) -> list[dict]:
    """Per label (rounded to 0, 0.5 or 1): mean r(q,[t;s]) of both policies and the shift
    (trained - reference) with a 95% CI.

    Why: -|r - l| can be raised on average by lowering every score when most pairs have a low label
    (reward hacking the objective allows under label imbalance). A healthy policy raises r on label-1
    pairs and lowers it on label-0 pairs; a negative shift on every label shows the template collapse.
    ``reference`` / ``trained``: per-pair scores (greedy, or the mean over sampled summaries).
    """
    # proxy labels are continuous (r(q,[t;d])): group every label with the nearest human grade value
    # (0, 0.5, 1), or each proxy value would be a row of its own with one pair
    labels = np.round(pairs["label"].to_numpy(dtype=np.float64) * 2) / 2
    products = pairs["product_id"].to_numpy()
    rows = []
    for value in np.unique(labels):
        mask = labels == value
        mean, lo, hi = paired_product_bootstrap(products[mask], trained[mask] - reference[mask], n_boot, seed)
        rows.append({"label": float(value), "pairs": int(mask.sum()), "share": float(mask.mean()),
                     "score_reference": float(reference[mask].mean()),
                     "score_trained": float(trained[mask].mean()),
                     "shift": mean, "shift_ci95": [lo, hi]})
    return rows


def groundedness_shift(pairs: pd.DataFrame, reference: pd.Series, trained: pd.Series, n_boot: int = 1000,
                       seed: int = 0) -> dict:
    """Per product, the share of summary content tokens found in its title + text, for both policies' greedy
    summaries, and the paired difference (trained - reference) with a 95% bootstrap CI over products.

    Why: -|r - l| does not punish invented attributes; this is the held-out (train-split, never golden)
    evidence for whether a policy needs the grounding penalty (``train.options.grounding_weight``).
    """
    from relsum.training.grounding import groundedness

    products = pairs.drop_duplicates("product_id")
    ids = products["product_id"].to_numpy()
    titles, texts = products["title"].tolist(), products["text"].tolist()

    def shares(summaries: pd.Series) -> np.ndarray:
        return np.array([groundedness(s, t, x) for s, t, x in
                         zip(pd.Series(ids).map(summaries).fillna("").tolist(), titles, texts, strict=True)])

    g_ref, g_new = shares(reference), shares(trained)
    mean, lo, hi = paired_product_bootstrap(ids, g_new - g_ref, n_boot=n_boot, seed=seed)
    return {"groundedness_reference": float(g_ref.mean()), "groundedness_trained": float(g_new.mean()),
            "groundedness_diff": mean, "groundedness_diff_ci95": [lo, hi]}


def compare_policies(pairs: pd.DataFrame, reference: pd.Series, trained: pd.Series, scorer,
                     n_boot: int = 1000, seed: int = 0, reference_samples: list[pd.Series] | None = None,
                     trained_samples: list[pd.Series] | None = None) -> dict:
    """Mean held-out reward of both policies and the paired difference with its CI, plus per-label shifts.

    Greedy summaries give the ``reward_*`` keys, ``label_shifts`` and (when ``pairs`` has a ``text``
    column) the ``groundedness_*`` keys of :func:`groundedness_shift`; sampled ones (both lists, same
    length) add ``sampled_reward_*`` keys, ``sampled_label_shifts`` and ``sampled_k``.
    """
    from relsum.policy.reward import rewards_from_scores

    products, labels = pairs["product_id"].to_numpy(), pairs["label"].tolist()
    s_ref = sample_pair_scores(pairs, [reference], scorer)[0]
    s_new = sample_pair_scores(pairs, [trained], scorer)[0]
    r_ref, r_new = rewards_from_scores(s_ref, labels), rewards_from_scores(s_new, labels)
    diff = r_new - r_ref
    mean, lo, hi = paired_product_bootstrap(products, diff, n_boot=n_boot, seed=seed)
    out = {
        "heldout_pairs": int(len(pairs)), "heldout_products": int(pairs["product_id"].nunique()),
        "reward_reference": float(r_ref.mean()), "reward_trained": float(r_new.mean()),
        "reward_diff": mean, "reward_diff_ci95": [lo, hi],
        "trained_better_pairs": int((diff > 0).sum()), "trained_worse_pairs": int((diff < 0).sum()),
        "label_shifts": label_shifts(pairs, s_ref, s_new, n_boot=n_boot, seed=seed),
    }
    if "text" in pairs.columns:
        out.update(groundedness_shift(pairs, reference, trained, n_boot=n_boot, seed=seed))
    if reference_samples and trained_samples:
        if len(reference_samples) != len(trained_samples):
            raise ValueError("reference and trained need the same number of sampled summaries")
        k_ref = sample_pair_scores(pairs, reference_samples, scorer)
        k_new = sample_pair_scores(pairs, trained_samples, scorer)
        e_ref = rewards_from_scores(k_ref, labels).mean(axis=0)
        e_new = rewards_from_scores(k_new, labels).mean(axis=0)
        mean, lo, hi = paired_product_bootstrap(products, e_new - e_ref, n_boot=n_boot, seed=seed)
        out.update({"sampled_k": len(reference_samples), "sampled_reward_reference": float(e_ref.mean()),
                    "sampled_reward_trained": float(e_new.mean()), "sampled_reward_diff": mean,
                    "sampled_reward_diff_ci95": [lo, hi],
                    "sampled_label_shifts": label_shifts(pairs, k_ref.mean(axis=0), k_new.mean(axis=0),
                                                         n_boot=n_boot, seed=seed)})
    return out
