"""Groundedness guard: how much of a summary the product's own title + description supports.

Why: the reward is a frozen cross-encoder, and a policy can raise r(q,[t;s]) by writing attractive
attributes the product does not have ("waterproof", "4K", "2 TB"). The guard counts summary content
tokens that never occur in the title or description text and turns their fraction into a penalty
(``TrainConfig.options.grounding_weight``) and into a report metric.

Tokens: lower-cased runs of ``[a-z0-9]``; a number with a decimal point or comma (``2.5``) is one
token and must occur exactly (``2.5`` is not supported by ``25`` or by ``2`` and ``5``). Stopwords
and the prompt frame's own words are not content. A trailing plural ``s`` is folded on both sides
(``cables`` ~ ``cable``) so inflection is not counted as invention. A summary with no content
tokens (empty, or only stopwords) is fully grounded: the gate and the reward handle empty ones.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

_TOKEN = re.compile(r"\d+(?:[.,]\d+)+|[a-z0-9]+")
STOPWORDS = frozenset({
    "a", "an", "the", "and", "or", "but", "nor", "of", "in", "on", "at", "to", "for", "from", "by", "with",
    "without", "into", "onto", "over", "under", "as", "is", "are", "was", "were", "be", "been", "being", "it",
    "its", "this", "that", "these", "those", "there", "here", "than", "then", "so", "such", "not", "no",
    "yes", "can", "could", "will", "would", "should", "may", "might", "has", "have", "had", "do", "does",
    "did", "all", "any", "each", "every", "both", "some", "more", "most", "other", "another", "only", "own",
    "same", "very", "also", "just", "per", "via", "up", "down", "out", "off", "about", "across", "after",
    "before", "between", "through", "during", "while", "which", "who", "whom", "whose", "what", "when",
    "where", "why", "how",
})
FRAME_WORDS = frozenset({"product", "attributes", "attribute", "appearing", "description", "title", "found"})


def _fold(token: str) -> str:
    if len(token) > 3 and token.endswith("s") and not token[-2].isdigit() and not token.endswith("ss"):
        return token[:-1]
    return token


def tokens(text: str | None) -> list[str]:
    """Lower-cased alphanumeric tokens (decimal numbers kept whole), plural ``s`` folded."""
    if not text or not isinstance(text, str):
        return []
    return [_fold(t) for t in _TOKEN.findall(text.lower())]


def content_tokens(text: str | None) -> list[str]:
    """:func:`tokens` minus stopwords and prompt frame words."""
    return [t for t in tokens(text) if t not in STOPWORDS and t not in FRAME_WORDS]


def unsupported_tokens(summary: str | None, title: str | None, text: str | None) -> list[str]:
    """Summary content tokens that occur nowhere in title + text (in summary order, repeats kept)."""
    source = set(tokens(title)) | set(tokens(text))
    return [t for t in content_tokens(summary) if t not in source]


def unsupported_fraction(summary: str | None, title: str | None, text: str | None) -> float:
    """Fraction of the summary's content tokens the product text does not support; 0.0 when it has none."""
    content = content_tokens(summary)
    if not content:
        return 0.0
    return len(unsupported_tokens(summary, title, text)) / len(content)


def groundedness(summary: str | None, title: str | None, text: str | None) -> float:
    """1 - :func:`unsupported_fraction`: 1.0 means every content token is in the title or description."""
    return 1.0 - unsupported_fraction(summary, title, text)


def number_groundedness(summary: str | None, title: str | None, text: str | None) -> float:
    """Share of the summary's number tokens (any token with a digit) found in title + text; nan when it has
    none.

    Invented numbers (a capacity, a size, a wattage) are the most misleading kind of invention, so they are
    reported apart from the all-token share.
    """
    numbers = [t for t in content_tokens(summary) if any(c.isdigit() for c in t)]
    if not numbers:
        return float("nan")
    source = set(tokens(title)) | set(tokens(text))
    return sum(t in source for t in numbers) / len(numbers)


def unsupported_fractions(summaries: Sequence[str], titles: Sequence[str],
                          texts: Sequence[str]) -> np.ndarray:
    if not len(summaries) == len(titles) == len(texts):
        raise ValueError("summaries, titles and texts must have the same length")
    return np.array([unsupported_fraction(s, t, x) for s, t, x in zip(summaries, titles, texts, strict=True)],
                    dtype=np.float64)


def grounding_penalties(summaries: Sequence[str], titles: Sequence[str], texts: Sequence[str],
                        weight: float) -> np.ndarray:
    """``weight * unsupported_fraction`` per summary: subtracted from the relevance reward."""
    if weight < 0:
        raise ValueError("grounding weight must be >= 0")
    return weight * unsupported_fractions(summaries, titles, texts)


def groundedness_stats(summaries: pd.Series, products: pd.DataFrame, n_boot: int = 1000,
                       seed: int = 0) -> dict[str, float]:
    """Mean groundedness over products with a non-empty summary, its 95% bootstrap CI, and counts.

    ``summaries``: product_id -> summary; ``products``: product_id, title, text. Products without a
    summary (or an empty one) are counted in ``n_empty`` and left out of the mean.
    """
    missing = {"product_id", "title", "text"} - set(products.columns)
    if missing:
        raise ValueError(f"products lacks columns {sorted(missing)}")
    frame = products.drop_duplicates("product_id").assign(
        summary=lambda d: d["product_id"].map(summaries).fillna("").astype(str))
    nonempty = frame[frame["summary"].str.strip() != ""]
    triples = list(zip(nonempty["summary"], nonempty["title"], nonempty["text"], strict=True))
    g = np.array([groundedness(s, t, x) for s, t, x in triples])
    nums = np.array([number_groundedness(s, t, x) for s, t, x in triples])
    nums = nums[~np.isnan(nums)]
    out = {"n_products": int(len(frame)), "n_empty": int(len(frame) - len(nonempty)),
           "groundedness": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"),
           "fully_grounded": float("nan"), "numbers_grounded": float(nums.mean()) if len(nums)
           else float("nan"), "n_with_numbers": int(len(nums))}
    if len(g):
        rng = np.random.default_rng(seed)
        boot = g[rng.integers(0, len(g), size=(n_boot, len(g)))].mean(axis=1)
        out.update(groundedness=float(g.mean()), ci_low=float(np.percentile(boot, 2.5)),
                   ci_high=float(np.percentile(boot, 97.5)), fully_grounded=float((g >= 1.0).mean()))
    return out


def groundedness_section(candidates: dict[str, pd.Series], products: pd.DataFrame, n_boot: int = 1000,
                         seed: int = 0) -> str:
    """Markdown for ``evaluation.report.write_report(extra_sections={"Groundedness": ...})``."""
    lines = ["Share of summary content tokens (lower-cased, stopwords and prompt words "
             "removed; numbers exact) "
             "found in the product's title + description; mean over products with a non-empty summary, "
             "95% bootstrap CI over products.", "",
             "Numbers: share of number tokens (any token with a digit) found there, "
             "over summaries with one.", "",
             "| candidate | groundedness [95% CI] | fully grounded | numbers grounded | products | "
             "with numbers | empty |", "|---|---|---|---|---|---|---|"]
    for name, summaries in candidates.items():
        s = groundedness_stats(summaries, products, n_boot=n_boot, seed=seed)
        value = ("n/a" if np.isnan(s["groundedness"]) else
                 f"{s['groundedness']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]")
        full = "n/a" if np.isnan(s["fully_grounded"]) else f"{100 * s['fully_grounded']:.0f}%"
        nums = "n/a" if np.isnan(s["numbers_grounded"]) else f"{s['numbers_grounded']:.3f}"
        lines.append(f"| {name} | {value} | {full} | {nums} | {s['n_products']} | {s['n_with_numbers']} | "
                     f"{s['n_empty']} |")
    return "\n".join(lines)
