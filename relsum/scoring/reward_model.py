"""Bootstrap the reward model: a MiniLM cross-encoder that keeps the encoder's knowledge and adds the labels.

Why distillation: the bundled MiniLM is a bi-encoder without a classifier head, so as a cross-encoder
it starts out random, and fine-tuning that head on ~1,100 judged pairs ranked *worse* than the
untrained bi-encoder's cosine (issue 21). So the student first learns the bi-encoder's judgement on
many unjudged (train query, product) pairs, pseudo-labelled by :mod:`relsum.scoring.distill`, together
with the judged pairs' human labels, in one pass of :func:`relsum.scoring.reward_train.fit`; then an
affine map of its logit is fitted on the judged pairs so that the sigmoid score suits the GRPO reward
-|r - l|. Every pair is trained as a title-only and a title + text document because the same scorer
later judges r(q, t), r(q, [t; d]) and r(q, [t; s]).

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

from relsum.core.config import cfg
from relsum.data.atomic_dir import staged_folder
from relsum.metrics.ranking import mean_ndcg_at_k, mean_reward
from relsum.scoring.model_files import find_safetensors

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("query_id", "query", "title", "text", "label")
METRICS_FILE = "reward_model_metrics.json"
#: Bumped when the recipe changes in a way that changes the model: part of the cache key.
RECIPE_VERSION = "distill-v1"
BF16_SETTINGS = ("auto", "on", "off")


@dataclasses.dataclass
class RewardModelConfig:
    """Reward-model bootstrap. Defaults (judged + ~1,100 teacher-labelled pairs x 2 views, 2 epochs, 96
    tokens, bf16 where native) are sized from measured throughput to ~5-6 minutes on a 2-core native-bf16
    CPU; :mod:`relsum.scoring.reward_cv` cross-validates alternatives over the train queries only
    (docs/reward_model.md has the figures and what is still to measure)."""

    base_model: str = cfg("", help="local model folder to start from; empty = the bundled MiniLM")
    teacher_model: str = cfg("", help="bi-encoder whose cosine is distilled; empty = the bundled MiniLM")
    distill: bool = cfg(True, help="add teacher-labelled unjudged pairs (needs a catalog); off = judged only")
    teacher_lead_words: int = cfg(40, help="the teacher reads title + the first N words of the text (its "
                                           "best view: longer text dilutes a mean-pooled embedding)")
    hard_negatives: int = cfg(20, help="per train query, the teacher's top-N catalog products to distil on")
    random_negatives: int = cfg(10, help="per train query, N random catalog products (easy negatives)")
    max_length: int = cfg(96, help="training token budget of [CLS] query [SEP] doc [SEP]: title + ~50 "
                                   "words; longer costs time roughly in proportion")
    eval_max_length: int = cfg(256, help="token budget of the held-out report (the scorer's default)")
    epochs: int = cfg(2, help="passes over the training examples")
    batch_size: int = cfg(32, help="training batch size")
    learning_rate: float = cfg(5e-5, help="AdamW peak learning rate (linear warmup and decay)")
    warmup_ratio: float = cfg(0.1, help="fraction of steps with linear warmup, in [0, 1)")
    seed: int = cfg(0, help="seed for subsampling, negatives, the new head and data order")
    max_train_pairs: int | None = cfg(None, help="subsample this many judged pairs; None = all")
    title_only_copies: bool = cfg(True, help="also train every pair with a title-only document")
    bf16: str = cfg("auto", help="bf16 autocast in training: auto (only on CPUs with native bf16), on, off")
    calibrate: bool = cfg(True, help="fit an affine map of the logit on the judged pairs for -|r - l|")
    out_dir: str = cfg("", help="where the trained model is saved; empty = <relsum home>/reward_model")

    def __post_init__(self) -> None:
        if self.max_length < 16 or self.eval_max_length < 16:
            raise ValueError(f"max_length and eval_max_length must be >= 16, got {self.max_length}, "
                             f"{self.eval_max_length}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.max_train_pairs is not None and self.max_train_pairs < 1:
            raise ValueError(f"max_train_pairs must be >= 1 or None, got {self.max_train_pairs}")
        if min(self.hard_negatives, self.random_negatives, self.teacher_lead_words) < 0:
            raise ValueError("hard_negatives, random_negatives and teacher_lead_words must be >= 0")
        if self.bf16 not in BF16_SETTINGS:
            raise ValueError(f"bf16 must be one of {BF16_SETTINGS}, got {self.bf16!r}")

    def resolved_base_model(self) -> Path:
        if self.base_model:
            return Path(self.base_model)
        from relsum.core.paths import minilm_dir

        return minilm_dir()

    def resolved_teacher(self) -> Path:
        if self.teacher_model:
            return Path(self.teacher_model)
        from relsum.core.paths import minilm_dir

        return minilm_dir()

    def resolved_out_dir(self) -> Path:
        if self.out_dir:
            return Path(self.out_dir)
        from relsum.core.paths import home

        return home() / "reward_model"


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
                                seed=config.seed)
    docs = [join_title_text(t, x) for t, x in zip(train["title"], train["text"], strict=True)]
    out = pd.DataFrame({"query": train["query"], "doc": docs, "target": train["label"], "judged": True})
    if config.title_only_copies:
        out = pd.concat([out, out.assign(doc=train["title"].to_numpy())], ignore_index=True)
        out = out.drop_duplicates(["query", "doc"], ignore_index=True)
    return out, {"n_judged_pairs": len(train), "n_pseudo_pairs": 0, "n_examples": len(out),
                 "train_query_ids": sorted(set(train["query_id"]))}


def train_model(train: pd.DataFrame, config: RewardModelConfig, catalog: pd.DataFrame | None = None,
                logged: pd.DataFrame | None = None, teacher=None):
    """Train in memory; returns (model, tokenizer, info). ``train`` must hold train queries only;
    ``teacher`` (a :class:`relsum.scoring.distill.Teacher`) is reused across cross-validation folds."""
    from transformers import AutoTokenizer

    from relsum.scoring import reward_train

    base = config.resolved_base_model()
    find_safetensors(base)
    examples, info = training_examples(train, config, catalog, logged, teacher)
    bf16 = reward_train.use_bf16(config.bf16)
    logger.info("reward model: fine-tuning %s as a cross-encoder on %d examples (%s), %d epochs, %s, "
                "%d tokens", base, len(examples),
                f"{info['n_judged_pairs']} judged + {info['n_pseudo_pairs']} teacher-labelled pairs",
                config.epochs, "bf16" if bf16 else "fp32", config.max_length)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = reward_train.load_student(base, config.seed)
    fit_info = reward_train.fit(
        model, tokenizer, examples["query"].tolist(), examples["doc"].tolist(),
        examples["target"].to_numpy(float), epochs=config.epochs, batch_size=config.batch_size,
        learning_rate=config.learning_rate, warmup_ratio=config.warmup_ratio, max_length=config.max_length,
        bf16=bf16, seed=config.seed)
    info.update(fit_info, bf16=bf16)
    if config.calibrate:
        judged = examples[examples["judged"]]
        logits = reward_train.predict_logits(model, tokenizer, judged["query"].tolist(),
                                             judged["doc"].tolist(), config.max_length, bf16)
        a, b = reward_train.fit_calibration(logits, judged["target"].to_numpy(float))
        reward_train.fold_calibration(model, a, b)
        info["calibration"] = [round(a, 4), round(b, 4)]
    return model, tokenizer, info


def held_out_report(model_dir: Path, eval_: pd.DataFrame, config: RewardModelConfig,
                    lead_n: int = 40) -> dict:
    """NDCG@5 on title / title + text / title + lead-``lead_n`` and the reward -|r - l| on title + text,
    scored the way every stage scores (``make_scorer``); ``nan`` metrics are reported as None."""
    from relsum.scoring.config import ScorerConfig
    from relsum.scoring.distill import lead_words
    from relsum.scoring.factory import make_scorer

    scorer = make_scorer(model_dir, ScorerConfig(max_length=config.eval_max_length, init_seed=config.seed,
                                                 path="fp32", store=False))
    q, t, labels = eval_["query"].tolist(), eval_["title"].tolist(), eval_["label"].to_numpy(float)
    views = {"title": [""] * len(q), "full": eval_["text"].tolist(),
             "lead": [lead_words(x, lead_n) for x in eval_["text"]]}
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
    with staged_folder(out_dir, None, "reward model", lock=False) as staged:  # swapped in whole
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
