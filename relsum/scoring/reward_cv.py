"""Choose the reward-model recipe by cross-validation over the TRAIN queries, never the golden split.

Why: the golden split is what every later report is judged on; picking epochs, learning rate or the
distillation mix on it would make those reports optimistic. Folds are whole queries (a query's pairs
never sit on both sides), the teacher's target map and the calibration are refitted inside each fold
from that fold's training queries only, and the held-out fold is scored exactly as the report scores
the golden split: NDCG@5 on title / title + text / title + lead-40, and the reward -|r - l| on
title + text, with the in-memory model at the report's token budget (fp32).
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import pandas as pd

from relsum.scoring.config import RewardModelConfig
from relsum.scoring.reward_model import check_pairs, train_model

logger = logging.getLogger(__name__)

METRICS = ("ndcg5_title", "ndcg5_full", "ndcg5_lead", "reward")


def query_folds(query_ids, n_folds: int, seed: int) -> list[set]:
    """``n_folds`` disjoint sets of query ids covering all of them (seeded shuffle, round robin)."""
    ids = sorted(set(query_ids))
    if not 2 <= n_folds <= len(ids):
        raise ValueError(f"n_folds must be in [2, {len(ids)} queries], got {n_folds}")
    order = np.random.default_rng(seed).permutation(len(ids))
    return [{ids[i] for i in order[f::n_folds]} for f in range(n_folds)]


def score_views(model, tokenizer, pairs: pd.DataFrame, max_length: int, lead_n: int = 40,
                logits_out: dict | None = None) -> dict:
    """The held-out figures of one in-memory model on judged ``pairs`` (the report's definitions);
    ``logits_out``, when given, receives each view's logits (for offline calibration studies)."""
    from relsum.metrics.ranking import mean_ndcg_at_k, mean_reward
    from relsum.scoring.documents import join_title_text, lead_doc
    from relsum.scoring.reward_train import predict_logits

    labels, qids = pairs["label"].to_numpy(float), pairs["query_id"].to_numpy()
    views = {"title": pairs["title"].tolist(),
             "full": [join_title_text(t, x) for t, x in zip(pairs["title"], pairs["text"], strict=True)],
             "lead": [lead_doc(t, x, lead_n)
                      for t, x in zip(pairs["title"], pairs["text"], strict=True)]}
    out = {}
    for name, docs in views.items():
        logits = predict_logits(model, tokenizer, pairs["query"].tolist(), docs, max_length)
        if logits_out is not None:
            logits_out[name] = logits
        scores = 1 / (1 + np.exp(-logits))
        out[f"ndcg5_{name}"] = mean_ndcg_at_k(qids, labels, scores, k=5).mean
        if name == "full":
            out["reward"] = mean_reward(labels, scores)
    return out


def cross_validate(train: pd.DataFrame, config: RewardModelConfig, *, catalog: pd.DataFrame | None = None,
                   logged: pd.DataFrame | None = None, n_folds: int = 3, seed: int = 0, teacher=None) -> dict:
    """Mean (and per-fold) held-out figures of ``config`` over query folds of ``train``."""
    from relsum.scoring.distill import Teacher

    train = check_pairs(train, "train")
    if config.distill and catalog is not None and teacher is None:
        teacher = Teacher(config.resolved_teacher(), catalog, config.teacher_lead_words)
    per_fold = []
    for f, held in enumerate(query_folds(train["query_id"], n_folds, seed)):
        inside = ~train["query_id"].isin(held)
        fold_log = None if logged is None else logged[~logged["query_id"].isin(held)]
        model, tokenizer, info = train_model(train[inside], config, catalog, fold_log, teacher)
        figures = score_views(model, tokenizer, train[~inside], config.eval_max_length)
        figures["train_seconds"] = info["train_seconds"]
        figures["train_queries"] = info["train_query_ids"]  # every query that reached training
        figures["heldout_queries"] = sorted(held)
        logger.info("CV fold %d/%d (%d held-out queries): %s", f + 1, n_folds, len(held),
                    {k: round(v, 4) for k, v in figures.items() if isinstance(v, float)})
        per_fold.append(figures)
    mean = {k: float(np.nanmean([fold[k] for fold in per_fold])) for k in (*METRICS, "train_seconds")}
    return {"mean": mean, "folds": per_fold, "n_folds": n_folds}


def selection_score(mean: dict) -> float:
    """What the choice maximises: mean NDCG@5 over the three document views, plus the reward's share."""
    ndcg = np.mean([mean["ndcg5_title"], mean["ndcg5_full"], mean["ndcg5_lead"]])
    return float(ndcg + 0.5 * mean["reward"]) if not math.isnan(mean["reward"]) else float(ndcg)


def choose_config(train: pd.DataFrame, candidates: dict[str, RewardModelConfig],
                  **kwargs) -> tuple[str, dict]:
    """(best candidate name, {name: cross_validate result}) by :func:`selection_score`; the teacher is
    embedded once for all candidates that share its settings."""
    from relsum.scoring.distill import Teacher

    results, teachers = {}, {}
    catalog = kwargs.get("catalog")
    for name, config in candidates.items():
        teacher = None
        if config.distill and catalog is not None:
            key = (str(config.resolved_teacher()), config.teacher_lead_words)
            if key not in teachers:
                teachers[key] = Teacher(config.resolved_teacher(), catalog, config.teacher_lead_words)
            teacher = teachers[key]
        results[name] = cross_validate(train, config, teacher=teacher, **kwargs)
        logger.info("CV %s: %s (%s)", name, {k: round(v, 4) for k, v in results[name]["mean"].items()},
                    dataclasses.asdict(config))
    best = max(results, key=lambda n: selection_score(results[n]["mean"]))
    return best, results
