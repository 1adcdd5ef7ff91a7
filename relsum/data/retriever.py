"""A small BM25 retriever over the catalog, used to derive a search log where none exists.

The bundled sample has graded judgments but no search log. A search engine's log holds the
products its retriever showed for each query, most of them never judged; we imitate that with
BM25 over title + description + attributes and keep the top candidates per query.
"""

from __future__ import annotations

import logging
import re
from collections import Counter

import numpy as np

logger = logging.getLogger(__name__)

_TOKEN = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Lower-cased alphanumeric tokens."""
    return _TOKEN.findall((text or "").lower())


class BM25:
    """Okapi BM25 (k1, b) over a fixed list of documents; scores are dense per query.

    score(q, d) = sum_{w in q} idf(w) * tf(w,d) * (k1 + 1) / (tf(w,d) + k1 * (1 - b + b * |d| / avgdl)),
    idf(w) = ln(1 + (N - df(w) + 0.5) / (df(w) + 0.5)).
    """

    def __init__(self, docs: list[str], k1: float = 1.2, b: float = 0.75):
        self.k1, self.b = k1, b
        self._tfs = [Counter(tokenize(d)) for d in docs]
        self._len = np.array([sum(tf.values()) for tf in self._tfs], dtype=np.float64)
        self._avgdl = float(self._len.mean()) if len(docs) else 0.0
        df: Counter[str] = Counter()
        for tf in self._tfs:
            df.update(tf.keys())
        n = len(docs)
        self._idf = {w: float(np.log(1 + (n - c + 0.5) / (c + 0.5))) for w, c in df.items()}
        self._postings: dict[str, list[tuple[int, int]]] = {}
        for i, tf in enumerate(self._tfs):
            for w, c in tf.items():
                self._postings.setdefault(w, []).append((i, c))

    def scores(self, query: str) -> np.ndarray:
        out = np.zeros(len(self._tfs), dtype=np.float64)
        norm = self.k1 * (1 - self.b + self.b * self._len / max(self._avgdl, 1e-9))
        for w in set(tokenize(query)):
            for i, tf in self._postings.get(w, ()):
                out[i] += self._idf[w] * tf * (self.k1 + 1) / (tf + norm[i])
        return out

    def top_k(self, query: str, k: int) -> list[tuple[int, float]]:
        """Indices and scores of the best ``k`` documents with a positive score, best first."""
        s = self.scores(query)
        idx = np.flatnonzero(s > 0)
        idx = idx[np.lexsort((idx, -s[idx]))][:k]
        return [(int(i), float(s[i])) for i in idx]
