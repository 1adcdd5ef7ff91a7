"""Bootstrap the reward model: a MiniLM cross-encoder that keeps the encoder's knowledge and adds the labels.

Why distillation: the bundled MiniLM is a bi-encoder without a classifier head, so as a cross-encoder
it starts out random, and fine-tuning that head on ~1,100 judged pairs ranked *worse* than the
untrained bi-encoder's cosine (issue 21). So the student first learns the bi-encoder's judgement on
many unjudged (train query, product) pairs, pseudo-labelled by :mod:`relsum.scoring.distill`, together
with the judged pairs' human labels, in one pass of :func:`relsum.scoring.reward_train.fit`; then an
affine map of its logit is fitted on the judged pairs of held-out train queries (never trained on) so
that the sigmoid score suits the GRPO reward -|r - l|. Every pair is trained as a title-only and a
title + text document, each with the teacher's estimate from that view (``distill-v2``), because the
same scorer later judges r(q, t), r(q, [t; d]) and r(q, [t; s]) and must learn what the text adds.

The held-out report (NDCG@5 on title / title + text / title + lead-40 and the reward) is scored by
:class:`relsum.scoring.scorer.Scorer` through :func:`relsum.scoring.factory.make_scorer`, the code
path that later serves labels, rewards and evaluation; it is reported, never used to choose anything.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from relsum.data.atomic_dir import is_model_folder, staged_folder
from relsum.metrics.ranking import mean_ndcg_at_k, mean_reward
from relsum.scoring.config import RewardModelConfig
from relsum.scoring.model_files import find_safetensors

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("query_id", "query", "title", "text", "label")
METRICS_FILE = "reward_model_metrics.json"
#: Bumped when the recipe changes in a way that changes the model: part of the cache key.
RECIPE_VERSION = "distill-v4"
def check_pairs(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """Refuse bad judged pairs with a clear message instead of dropping them."""
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{name}: missing columns {missing} (need {list(REQUIRED_COLUMNS)})")
    if df.empty:
        raise ValueError(f"{name}: no rows")
    labels = pd.to_numeric(df["label"], errors="coerce")
    bad = df.index[labels.isna() | (labels < 0) | (labels > 1)]
    if len(bad):
        raise ValueError(f"{name}: {len(bad)} labels are not numbers in [0, 1], e.g. row {bad[0]}")
    for col in ("query", "title"):
        empty = df.index[~df[col].map(lambda v: isinstance(v, str) and bool(v.strip()))]
        if len(empty):
            raise ValueError(f"{name}: {len(empty)} rows have an empty/non-string {col}, e.g. row {empty[0]}")
    out = df.copy()
    out["label"] = labels.astype(float)
    out["text"] = out["text"].map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v))
                                  else v)
    return out


def training_examples(train: pd.DataFrame, config: RewardModelConfig, catalog: pd.DataFrame | None,
                      logged: pd.DataFrame | None, teacher=None) -> tuple[pd.DataFrame, dict]:
    """(query, doc, target, judged) rows: judged pairs, plus teacher-labelled pairs when distilling."""
    from relsum.scoring.distill import Teacher, distill_examples
    from relsum.scoring.documents import join_title_text

    if config.distill and catalog is not None:
        teacher = teacher or Teacher(config.resolved_teacher(), catalog, config.teacher_lead_words)
        queries = pd.concat([train[["query_id", "query"]],
                             logged[["query_id", "query"]] if logged is not None else None])
        queries = queries.drop_duplicates("query_id", ignore_index=True)
        logged = logged if logged is not None else train[["query_id", "product_id"]]
        return distill_examples(train, queries, logged, catalog, teacher, hard_k=config.hard_negatives,
                                random_k=config.random_negatives, title_only=config.title_only_copies,
                                seed=config.seed, view_targets=config.view_targets,
                                judged_title_weight=config.judged_title_weight,
                                text_view=config.text_view)
    docs = [join_title_text(t, x) for t, x in zip(train["title"], train["text"], strict=True)]
    out = pd.DataFrame({"query": train["query"], "doc": docs, "target": train["label"], "judged": True,
                        "view": "text", "pair": np.arange(len(train))})
    if config.title_only_copies:
        out = pd.concat([out, out.assign(doc=train["title"].to_numpy(), view="title")], ignore_index=True)
        out = out.drop_duplicates(["query", "doc"], ignore_index=True)
    return out, {"n_judged_pairs": len(train), "n_pseudo_pairs": 0, "n_examples": len(out),
                 "train_query_ids": sorted(set(train["query_id"]))}


def train_model(train: pd.DataFrame, config: RewardModelConfig, catalog: pd.DataFrame | None = None,
                logged: pd.DataFrame | None = None, teacher=None):
    """Train in memory; returns (model, tokenizer, info). ``train`` must hold train queries only;
    ``teacher`` (a :class:`relsum.scoring.distill.Teacher`) is reused across cross-validation folds.
    ``info["train_query_ids"]`` is every query that reached the model (student or calibration);
    ``student_query_ids`` and ``calibration_query_ids`` say which did what."""
    from transformers import AutoTokenizer

    from relsum.scoring import reward_train

    base = config.resolved_base_model()
    find_safetensors(base)
    held = None
    if config.calibrate:
        train, logged, held = reward_train.calibration_split(train, logged, config.calibration_holdout,
                                                             config.seed, config.calibration_min_pairs)
    examples, info = training_examples(train, config, catalog, logged, teacher)
    bf16 = reward_train.use_bf16(config.bf16)
    logger.info("reward model: fine-tuning %s as a cross-encoder on %d examples (%s), %d epochs, %s, "
                "%d tokens", base, len(examples),
                f"{info['n_judged_pairs']} judged + {info['n_pseudo_pairs']} teacher-labelled pairs",
                config.epochs, "bf16" if bf16 else "fp32", config.max_length)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = reward_train.load_student(base, config.seed)
    def train_on(frame: pd.DataFrame, epochs: int, seed: int, consistency=None) -> dict:
        return reward_train.fit(
            model, tokenizer, frame["query"].tolist(), frame["doc"].tolist(), frame["target"].to_numpy(float),
            epochs=epochs, batch_size=config.batch_size, learning_rate=config.learning_rate,
            warmup_ratio=config.warmup_ratio, max_length=config.max_length, bf16=bf16, seed=seed,
            consistency=consistency, consistency_weight=config.view_consistency)

    pairs = reward_train.view_pairs(examples) if config.view_consistency else None
    fit_info = train_on(examples, config.epochs, config.seed, pairs)
    if config.judged_finish_epochs and not examples["judged"].all():
        judged = examples[examples["judged"]]
        logger.info("reward model: %d more epoch(s) on the %d judged examples alone",
                    config.judged_finish_epochs, len(judged))
        finish = train_on(judged, config.judged_finish_epochs, config.seed + 1)
        fit_info = {**fit_info, "steps": fit_info["steps"] + finish["steps"],
                    "train_seconds": round(fit_info["train_seconds"] + finish["train_seconds"], 2),
                    "finish_loss": finish["final_loss"]}
    info.update(fit_info, bf16=bf16, student_query_ids=info["train_query_ids"], calibration_query_ids=[])
    if config.calibrate:
        if held is not None:  # unseen queries, scored as the scorer serves them (fp32, its token budget)
            queries, docs, labels = reward_train.calibration_docs(held, config.teacher_lead_words)
            logits = reward_train.predict_logits(model, tokenizer, queries, docs, config.eval_max_length)
            info["calibration_query_ids"] = sorted(set(held["query_id"]))
        else:
            judged = examples[examples["judged"]]
            queries, docs, labels = judged["query"].tolist(), judged["doc"].tolist(), judged["target"]
            logits = reward_train.predict_logits(model, tokenizer, queries, docs, config.max_length, bf16)
        a, b = reward_train.fit_calibration(logits, np.asarray(labels, dtype=float),
                                            balance=config.calibration_balance)
        reward_train.fold_calibration(model, a, b)
        info["calibration"] = [round(a, 4), round(b, 4)]
        info["calibration_pairs"] = len(queries)
        info["train_query_ids"] = sorted(set(info["student_query_ids"]) | set(info["calibration_query_ids"]))
    return model, tokenizer, info


def held_out_report(model_dir: Path, eval_: pd.DataFrame, config: RewardModelConfig,
                    lead_n: int = 40) -> dict:
    """NDCG@5 on title / title + text / title + lead-``lead_n`` and the reward -|r - l| on title + text,
    scored the way every stage scores (``make_scorer``); ``nan`` metrics are reported as None."""
    from relsum.scoring.config import ScorerConfig
    from relsum.scoring.documents import lead_text
    from relsum.scoring.factory import make_scorer

    scorer = make_scorer(model_dir, ScorerConfig(max_length=config.eval_max_length, init_seed=config.seed,
                                                 path="fp32", store=False))
    q, t, labels = eval_["query"].tolist(), eval_["title"].tolist(), eval_["label"].to_numpy(float)
    views = {"title": [""] * len(q), "full": eval_["text"].tolist(),
             "lead": [lead_text(x, lead_n) for x in eval_["text"]]}
    out: dict = {}
    for name, texts in views.items():
        scores = scorer.score(q, t, texts, desc=f"held-out {name}")
        summary = mean_ndcg_at_k(eval_["query_id"].to_numpy(), labels, scores, k=5)
        out[f"ndcg5_{name}"] = None if math.isnan(summary.mean) else round(summary.mean, 4)
        out["n_eval_queries"] = summary.n_queries
        if name == "full":
            reward = mean_reward(labels, np.asarray(scores, dtype=float))
            out["reward"] = None if math.isnan(reward) else round(reward, 4)
    return out


def train_reward_model(train: pd.DataFrame, eval_: pd.DataFrame | None, config: RewardModelConfig, *,
                       catalog: pd.DataFrame | None = None, logged: pd.DataFrame | None = None) -> dict:
    """Train on ``train`` (+ teacher-labelled ``catalog`` pairs of ``logged`` train queries); save the model
    (safetensors) atomically and ``reward_model_metrics.json`` with the held-out report on ``eval_``.

    ``train``/``eval_`` have columns query_id, query, title, text, label (label in [0, 1]); with
    ``catalog`` (product_id, title, text), ``train`` also needs product_id. ``logged`` (query_id, query,
    product_id) are the search-log pairs of the train queries.
    """
    from relsum.data.io import write_json_atomic
    from relsum.scoring.distill import check_disjoint

    start = time.monotonic()
    out_dir = config.resolved_out_dir().resolve()
    train = check_pairs(train, "train")
    eval_ = check_pairs(eval_, "eval") if eval_ is not None else None
    if eval_ is not None:
        check_disjoint(train, eval_, "the training judgments")
        if logged is not None:
            check_disjoint(logged, eval_, "the search log used for distillation")
    if config.max_train_pairs is not None and len(train) > config.max_train_pairs:
        train = train.sample(n=config.max_train_pairs, random_state=config.seed)
        logger.info("subsampled %d judged training pairs", len(train))
    model, tokenizer, info = train_model(train, config, catalog, logged)
    # swapped in whole; a non-empty out_dir without a model is refused, never deleted
    with staged_folder(out_dir, None, "reward model", lock=False, ours=is_model_folder) as staged:
        model.save_pretrained(str(staged), safe_serialization=True)
        tokenizer.save_pretrained(str(staged))
        find_safetensors(staged)
    report = held_out_report(out_dir, eval_, config) if eval_ is not None else {}
    metrics = {**report, **info, "seconds": round(time.monotonic() - start, 2),
               "base_model": str(config.resolved_base_model()), "recipe": RECIPE_VERSION,
               "config": dataclasses.asdict(config)}
    write_json_atomic(metrics, out_dir / METRICS_FILE)
    logger.info("reward model saved to %s in %.0f s: held-out NDCG@5 title %s, title+text %s, lead-40 %s, "
                "reward %s", out_dir, metrics["seconds"], report.get("ndcg5_title"), report.get("ndcg5_full"),
                report.get("ndcg5_lead"), report.get("reward"))
    return metrics
