"""Tokenize (query, doc) pairs and pack them into token-budget batches, as the scorer's runners take them.

Why a token budget instead of a fixed row count: pairs are sorted by *token* length, longest first, and
each batch holds as many rows as fit ``rows x padded length <= max_tokens_per_batch`` (capped at 4x
``batch_size``), so short pairs go in big batches and almost no compute is spent on padding.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np

from relsum.scoring.config import ScorerConfig

logger = logging.getLogger(__name__)


def tokenize_pairs(tokenizer: Any, pairs: list[tuple[str, str]], max_length: int
                   ) -> list[dict[str, list[int]]]:
    """Token ids per pair; the doc is truncated first, both sides only when the query alone is too long."""
    kw = {"max_length": max_length, "padding": False, "return_attention_mask": False}
    qs, ds = [p[0] for p in pairs], [p[1] for p in pairs]
    try:
        enc = tokenizer(qs, ds, truncation="only_second", **kw)
        return [{k: enc[k][i] for k in enc} for i in range(len(pairs))]
    except Exception:  # some query fills max_length by itself: fall back pair by pair
        out = []
        for q, d in pairs:
            try:
                enc = tokenizer(q, d, truncation="only_second", **kw)
            except Exception:
                enc = tokenizer(q, d, truncation="longest_first", **kw)
            out.append(dict(enc))
        return out


def batch_rows(lengths: np.ndarray, config: ScorerConfig, widths: np.ndarray | None = None
               ) -> Iterator[np.ndarray]:
    """Index batches, longest first, with rows x padded length <= ``config.max_tokens_per_batch``.

    With ``widths`` (canonical padding) a batch only holds pairs of one width.
    """
    key = lengths if widths is None else widths
    order = np.argsort(-key, kind="stable")
    max_rows = 4 * config.batch_size
    start = 0
    while start < len(order):
        width = int(key[order[start]])
        rows = min(max_rows, max(1, config.max_tokens_per_batch // width))
        if widths is not None:
            rows = min(rows, int(np.count_nonzero(widths[order[start:start + rows]] == width)))
        yield order[start:start + rows]
        start += rows


def feature_batches(tokenizer: Any, pairs: list[tuple[str, str]], config: ScorerConfig, *,
                    canonical: bool = False) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """(row indices, int64 features) per batch: ``input_ids``, ``attention_mask`` [, ``token_type_ids``].

    ``canonical`` pads every pair to a width that depends on its own length only
    (:func:`relsum.scoring.int8_static.canonical_width`), so its row is the same in any batch.
    """
    encoded = tokenize_pairs(tokenizer, pairs, config.max_length)
    lengths = np.array([len(e["input_ids"]) for e in encoded], dtype=np.int64)
    widths = None
    if canonical:
        from relsum.scoring.int8_static import canonical_width

        widths = np.array([canonical_width(int(n), config.max_length) for n in lengths], dtype=np.int64)
    pad_id = tokenizer.pad_token_id or 0
    use_types = "token_type_ids" in encoded[0]
    for idx in batch_rows(lengths, config, widths):
        width = int((lengths if widths is None else widths)[idx].max())
        ids = np.full((len(idx), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(idx), width), dtype=np.int64)
        types = np.zeros((len(idx), width), dtype=np.int64)
        for r, i in enumerate(idx):
            n = lengths[i]
            ids[r, :n] = encoded[i]["input_ids"]
            mask[r, :n] = 1
            if use_types:
                types[r, :n] = encoded[i]["token_type_ids"]
        feats = {"input_ids": ids, "attention_mask": mask}
        if use_types:
            feats["token_type_ids"] = types
        yield idx, feats
