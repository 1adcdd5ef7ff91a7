"""Distillation data for the reward-model bootstrap: the bi-encoder teacher and the pseudo-labelled pairs.

Why: a cross-encoder built from the bundled MiniLM starts with a random head, and ~1,100 judged pairs
cannot rebuild what the encoder knew (the issue measured the 1-epoch bootstrap *below* the untrained
MiniLM bi-encoder). The bi-encoder itself ranks well when it reads the title and the lead of the text
(cosine of mean-pooled embeddings). So the student cross-encoder is first told what the teacher thinks
of many unjudged (train query, product) pairs, and the judged labels are added on top.

Targets are view-specific (``distill-v2``): the title-only document of a pair gets the teacher's cosine on
the title alone, the title + text document the teacher's cosine on the title + lead of the text (its best
view), each mapped to [0, 1] by its own logistic fit on the judged train pairs (the two cosines have
different scales, and each map is then P(label | that view)). So the student is told where the text
changes relevance. ``distill-v1`` gave both views the lead-view target, which taught that text changes
nothing. Judged pairs keep their human label (raters saw the whole product) on the title + text view; their
title-only view gets the label blended with the teacher's title-only estimate (``judged_title_weight``).
Nothing here ever reads the eval queries: callers pass train queries only (:func:`check_disjoint` guards
the pipeline).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from relsum.core.errors import InputError
from relsum.scoring.documents import join_title_text, lead_doc

logger = logging.getLogger(__name__)


def check_disjoint(train_queries: pd.DataFrame, eval_queries: pd.DataFrame, what: str) -> None:
    """Refuse training data that holds an eval query (by id or by query text): eval labels would leak."""
    ids = set(train_queries["query_id"]) & set(eval_queries["query_id"])
    texts = (set(train_queries["query"].str.strip().str.lower())
             & set(eval_queries["query"].str.strip().str.lower()))
    if ids or texts:
        example = sorted(ids)[:3] or sorted(texts)[:3]
        raise InputError(f"{what} contains {len(ids)} eval query ids and {len(texts)} eval query texts "
                         f"(e.g. {example}); the held-out queries must never reach training")


def embed(model_dir: str | Path, texts: list[str], max_length: int, batch_size: int = 64) -> np.ndarray:
    """L2-normalised mean-pooled embeddings (the MiniLM sentence-transformers recipe), float32."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from relsum.scoring.reward_train import quiet_loader

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    with quiet_loader():
        model = AutoModel.from_pretrained(str(model_dir)).eval()
    order = np.argsort([len(t) for t in texts])  # similar lengths per batch: little padding
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[idx] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    return out


class Teacher:
    """Cosine similarity of query and product embeddings, each product embedded once per view:
    ``lead`` (title + the first ``lead_n`` words of the text) and ``title`` (the title alone, embedded on
    first use)."""

    VIEWS = ("lead", "title")

    def __init__(self, model_dir: str | Path, catalog: pd.DataFrame, lead_n: int, max_length: int = 256):
        self.model_dir, self.max_length, self.lead_n = Path(model_dir), max_length, lead_n
        self.product_ids = catalog["product_id"].tolist()
        self.row = {p: i for i, p in enumerate(self.product_ids)}
        self._titles = catalog["title"].tolist()
        docs = [lead_doc(t, x, lead_n) for t, x in zip(catalog["title"], catalog["text"], strict=True)]
        self.doc_emb = {"lead": embed(model_dir, docs, max_length)}
        self._query_emb: dict[str, np.ndarray] = {}

    def view_embeddings(self, view: str) -> np.ndarray:
        if view not in self.VIEWS:
            raise ValueError(f"teacher view must be one of {self.VIEWS}, got {view!r}")
        if view not in self.doc_emb:
            self.doc_emb[view] = embed(self.model_dir, self._titles, self.max_length)
        return self.doc_emb[view]

    def query_embeddings(self, queries: list[str]) -> np.ndarray:
        new = sorted({q for q in queries if q not in self._query_emb})
        if new:
            for q, e in zip(new, embed(self.model_dir, new, self.max_length), strict=True):
                self._query_emb[q] = e
        return np.stack([self._query_emb[q] for q in queries])

    def cosine(self, queries: list[str], product_ids: list[str], view: str = "lead") -> np.ndarray:
        q = self.query_embeddings(queries)
        d = self.view_embeddings(view)[[self.row[p] for p in product_ids]]
        return (q * d).sum(1)

    def all_cosines(self, query: str) -> np.ndarray:
        return self.doc_emb["lead"] @ self.query_embeddings([query])[0]


def fit_target_map(cosine: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(a, b) of ``sigmoid(a * cosine + b)`` fitted to graded labels by soft-label logistic regression."""
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate([cosine, cosine]).reshape(-1, 1)
    y = np.concatenate([np.ones(len(labels)), np.zeros(len(labels))])
    w = np.concatenate([labels, 1 - labels]) + 1e-6
    fit = LogisticRegression(C=100.0).fit(x, y, sample_weight=w)
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


def candidate_pairs(queries: pd.DataFrame, logged: pd.DataFrame, teacher: Teacher, hard_k: int, random_k: int,
                    seed: int) -> pd.DataFrame:
    """(query_id, query, product_id) to distil on: per train query, its logged products, the teacher's
    top ``hard_k`` catalog products (hard positives/negatives) and ``random_k`` random ones (easy
    negatives, so the student also learns what is plainly irrelevant)."""
    rng = np.random.default_rng(seed)
    rows = []
    n = len(teacher.product_ids)
    for qid, query in zip(queries["query_id"], queries["query"], strict=True):
        chosen = list(logged.loc[logged["query_id"] == qid, "product_id"])
        top = np.argsort(-teacher.all_cosines(query))[:hard_k]
        chosen += [teacher.product_ids[i] for i in top]
        chosen += [teacher.product_ids[i] for i in rng.choice(n, size=min(random_k, n), replace=False)]
        rows += [(qid, query, p) for p in dict.fromkeys(chosen) if p in teacher.row]
    return pd.DataFrame(rows, columns=["query_id", "query", "product_id"])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def distill_examples(judged: pd.DataFrame, queries: pd.DataFrame, logged: pd.DataFrame,
                     catalog: pd.DataFrame, teacher: Teacher, *, hard_k: int, random_k: int,
                     title_only: bool, seed: int, view_targets: bool = True, judged_title_weight: float = 1.0,
                     text_view: str = "full") -> tuple[pd.DataFrame, dict]:
    """Training rows (query, doc, target, judged, view) and a summary.

    Title + text rows (``view`` "text"; the document is the whole text, cut later at the token budget, or
    with ``text_view="lead"`` the teacher's title + lead): judged pairs get their human label, pseudo
    pairs the teacher's lead-view probability. Title-only rows (``view`` "title", when ``title_only``):
    with ``view_targets``, pseudo pairs get the teacher's title-view probability and judged pairs
    ``judged_title_weight * label + (1 - judged_title_weight) * that probability``; without it
    (``distill-v1``), every pair's title-only row repeats its title + text target.
    """
    if text_view not in ("full", "lead"):
        raise ValueError(f"text_view must be 'full' or 'lead', got {text_view!r}")
    labels = judged["label"].to_numpy(float)
    maps = {}
    for view in ("lead", "title") if view_targets else ("lead",):
        maps[view] = fit_target_map(teacher.cosine(judged["query"].tolist(), judged["product_id"].tolist(),
                                                   view=view), labels)
        if maps[view][0] <= 0:
            logger.warning("the teacher's %s-view cosine does not rise with the judged labels (slope %.2f): "
                           "its pseudo labels carry no signal for this data", view, maps[view][0])
    pairs = candidate_pairs(queries, logged, teacher, hard_k, random_k, seed)
    pairs = pairs.merge(judged[["query_id", "product_id"]].assign(_judged=True), how="left",
                        on=["query_id", "product_id"])
    pseudo = pairs[pairs["_judged"].isna()].drop(columns="_judged")

    def teacher_prob(frame: pd.DataFrame, view: str) -> np.ndarray:
        a, b = maps[view]
        cos = teacher.cosine(frame["query"].tolist(), frame["product_id"].tolist(), view=view)
        return _sigmoid(a * cos + b)

    pseudo = pseudo.assign(label=teacher_prob(pseudo, "lead"), judged=False)
    rows = pd.concat([judged[["query", "product_id", "label"]].assign(judged=True),
                      pseudo[["query", "product_id", "label", "judged"]]], ignore_index=True)
    if view_targets:
        title_prob = teacher_prob(rows, "title")
        w = np.where(rows["judged"].to_numpy(bool), judged_title_weight, 0.0)
        title_target = w * rows["label"].to_numpy(float) + (1 - w) * title_prob
    else:
        title_target = rows["label"].to_numpy(float)
    rows = rows.join(catalog.set_index("product_id")[["title", "text"]], on="product_id")
    if text_view == "lead":
        docs = [lead_doc(t, x, teacher.lead_n) for t, x in zip(rows["title"], rows["text"], strict=True)]
    else:
        docs = [join_title_text(t, x) for t, x in zip(rows["title"], rows["text"], strict=True)]
    out = pd.DataFrame({"query": rows["query"], "doc": docs, "target": rows["label"].astype(float),
                        "judged": rows["judged"].astype(bool), "view": "text", "pair": np.arange(len(rows))})
    if title_only:
        titles = out.assign(doc=rows["title"].to_numpy(), target=title_target, view="title")
        out = pd.concat([out, titles], ignore_index=True)
        out = out.drop_duplicates(["query", "doc"], ignore_index=True)  # empty-text rows: the text row stays
    summary = {"n_judged_pairs": len(judged), "n_pseudo_pairs": len(pseudo), "n_examples": len(out),
               "n_queries": int(queries["query_id"].nunique()),
               "target_map": [round(v, 4) for v in maps["lead"]],
               "target_maps": {view: [round(v, 4) for v in ab] for view, ab in maps.items()},
               "mean_target": {view: round(float(out.loc[out["view"] == view, "target"].mean()), 4)
                               for view in ("text", "title")},
               "train_query_ids": sorted(set(queries["query_id"]) | set(judged["query_id"]))}
    logger.info("distillation set: %d judged + %d pseudo-labelled pairs over %d train queries -> %d examples "
                "(%s targets, text view %s)", len(judged), len(pseudo), summary["n_queries"], len(out),
                "view-specific" if view_targets else "shared", text_view)
    return out, summary
