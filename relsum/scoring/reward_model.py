"""Bootstrap the reward model: fine-tune a cross-encoder on judged (query, product, label) pairs.

The bundled MiniLM is a bi-encoder without a classifier head, so as a cross-encoder it starts out
random (the "untrained start"). A short sentence-transformers CrossEncoder fine-tune on the judged
pairs turns it into a usable r(q, doc). Each judged pair is trained both as a title-only and as a
title+text document, because the same scorer later judges r(q, t), r(q, [t; d]) and r(q, [t; s]).
The function reports held-out NDCG@5 of the untrained start and of the trained model, both scored
by :class:`relsum.scoring.scorer.Scorer` on title+text documents, so the gain is measured with the
exact code path that later serves labels, rewards and evaluation.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from relsum.config import cfg
from relsum.metrics import mean_ndcg_at_k
from relsum.scoring.documents import join_title_text
from relsum.scoring.model_files import find_safetensors
from relsum.scoring.scorer_config import ScorerConfig

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("query_id", "query", "title", "text", "label")
METRICS_FILE = "reward_model_metrics.json"


@dataclasses.dataclass
class RewardModelConfig:
    """Reward-model bootstrap; defaults (400 of ~1,000 judged pairs, 128 tokens, 1 epoch) aim at ~3 minutes
    on 2 CPU cores."""

    base_model: str = cfg("", help="local model folder to start from; empty = the bundled MiniLM")
    max_length: int = cfg(128, help="max tokens per (query, doc) pair in training and in the NDCG check")
    epochs: int = cfg(1, help="passes over the training pairs")
    batch_size: int = cfg(16, help="training batch size")
    learning_rate: float = cfg(5e-5, help="AdamW peak learning rate (linear decay)")
    warmup_ratio: float = cfg(0.1, help="fraction of steps with linear warmup, in [0, 1)")
    seed: int = cfg(0, help="seed for subsampling, the random head and data order")
    max_train_pairs: int | None = cfg(400, help="subsample this many judged pairs (before the title-only "
                                                 "copies are added); None = all; 400 keeps the 2-core "
                                                 "bootstrap to a few minutes")
    title_only_copies: bool = cfg(True, help="also train every pair with a title-only document")
    out_dir: str = cfg("", help="where the trained model is saved; empty = <relsum home>/reward_model")

    def __post_init__(self) -> None:
        if self.max_length < 16:
            raise ValueError(f"max_length must be >= 16, got {self.max_length}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.max_train_pairs is not None and self.max_train_pairs < 1:
            raise ValueError(f"max_train_pairs must be >= 1 or None, got {self.max_train_pairs}")

    def resolved_base_model(self) -> Path:
        if self.base_model:
            return Path(self.base_model)
        from relsum.paths import minilm_dir

        return minilm_dir()

    def resolved_out_dir(self) -> Path:
        if self.out_dir:
            return Path(self.out_dir)
        from relsum.paths import home

        return home() / "reward_model"


def _check_pairs(df: pd.DataFrame, name: str) -> pd.DataFrame:
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


def _training_dataset(train: pd.DataFrame, title_only: bool):
    from datasets import Dataset

    rows = pd.DataFrame({"query": train["query"], "doc": [join_title_text(t, x) for t, x in
                                                         zip(train["title"], train["text"], strict=True)],
                         "label": train["label"]})
    if title_only:
        rows = pd.concat([rows, pd.DataFrame({"query": train["query"], "doc": train["title"],
                                              "label": train["label"]})], ignore_index=True)
        rows = rows.drop_duplicates(["query", "doc", "label"], ignore_index=True)  # empty-text rows repeat
    return Dataset.from_pandas(rows, preserve_index=False)


def _eval_ndcg(model_dir: Path, eval_: pd.DataFrame, config: RewardModelConfig) -> tuple[float, int]:
    """Mean NDCG@5 of ``model_dir`` on the held-out pairs (the library's tie rule) and its query count."""
    from relsum.scoring.factory import make_scorer

    scorer = make_scorer(model_dir, ScorerConfig(max_length=config.max_length, init_seed=config.seed))
    scores = scorer.score(eval_["query"].tolist(), eval_["title"].tolist(), eval_["text"].tolist(),
                          desc=f"NDCG@5 {model_dir.name}")
    summary = mean_ndcg_at_k(eval_["query_id"].to_numpy(), eval_["label"].to_numpy(dtype=float), scores, k=5)
    return summary.mean, summary.n_queries  # n_queries: eval queries with a positive label


def _write_json_atomic(path: Path, payload: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=True, allow_nan=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def swap_in_folder(tmp_dir: Path, out_dir: Path) -> None:
    """Replace ``out_dir`` by ``tmp_dir`` so a reader never sees a half-written model."""
    old = out_dir.with_name(out_dir.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if out_dir.exists():
        out_dir.rename(old)
    tmp_dir.rename(out_dir)
    if old.exists():
        shutil.rmtree(old)


def train_reward_model(train: pd.DataFrame, eval_: pd.DataFrame, config: RewardModelConfig) -> dict:
    """Fine-tune the base cross-encoder on ``train``; save it (safetensors) and its held-out NDCG@5.

    ``train``/``eval_`` have columns query_id, query, title, text, label (label in [0, 1]). Returns
    and writes ``<out_dir>/reward_model_metrics.json`` with ndcg5_untrained, ndcg5_trained,
    n_train_pairs (judged pairs used), n_train_examples (with title-only copies), n_eval_queries
    (eval queries with a positive) and seconds.
    """
    start = time.monotonic()
    base = config.resolved_base_model()
    find_safetensors(base)  # local folder with safetensors, before anything heavy happens
    out_dir = config.resolved_out_dir().resolve()
    train, eval_ = _check_pairs(train, "train"), _check_pairs(eval_, "eval")
    if config.max_train_pairs is not None and len(train) > config.max_train_pairs:
        train = train.sample(n=config.max_train_pairs, random_state=config.seed)
        logger.info("subsampled %d judged training pairs", len(train))
    dataset = _training_dataset(train, config.title_only_copies)
    import torch  # heavy imports only after the inputs passed their checks
    from sentence_transformers.cross_encoder import (
        CrossEncoder,
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    logger.info("reward model: %d judged pairs -> %d "
                "training examples, base %s", len(train), len(dataset), base)

    ndcg_untrained, n_eval_queries = _eval_ndcg(base, eval_, config)
    torch.manual_seed(config.seed)
    model = CrossEncoder(str(base), num_labels=1, max_length=config.max_length, device="cpu",
                         local_files_only=True, trust_remote_code=False)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f".{out_dir.name}.") as scratch:
        args = CrossEncoderTrainingArguments(
            output_dir=str(Path(scratch) / "trainer"), num_train_epochs=config.epochs,
            per_device_train_batch_size=config.batch_size, learning_rate=config.learning_rate,
            warmup_steps=config.warmup_ratio, seed=config.seed, data_seed=config.seed,
            report_to="none", save_strategy="no", logging_strategy="no", push_to_hub=False,
            use_cpu=True, bf16=False, fp16=False, dataloader_num_workers=0, disable_tqdm=False)
        trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset,
                                      loss=BinaryCrossEntropyLoss(model))
        train_start = time.monotonic()
        trainer.train()
        train_seconds = time.monotonic() - train_start
        staged = Path(scratch) / "model"
        model.save_pretrained(str(staged), safe_serialization=True)
        find_safetensors(staged)
        swap_in_folder(staged, out_dir)

    ndcg_trained, _ = _eval_ndcg(out_dir, eval_, config)
    metrics = {
        "ndcg5_untrained": None if math.isnan(ndcg_untrained) else ndcg_untrained,
        "ndcg5_trained": None if math.isnan(ndcg_trained) else ndcg_trained,
        "n_train_pairs": len(train), "n_train_examples": len(dataset), "n_eval_queries": n_eval_queries,
        "train_seconds": round(train_seconds, 2), "seconds": round(time.monotonic() - start, 2),
        "base_model": str(base), "config": dataclasses.asdict(config),
    }
    _write_json_atomic(out_dir / METRICS_FILE, metrics)
    logger.info("reward model saved to %s: NDCG@5 %s -> %s", out_dir, metrics["ndcg5_untrained"],
                metrics["ndcg5_trained"])
    return metrics
