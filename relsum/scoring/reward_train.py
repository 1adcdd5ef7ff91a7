"""The reward model's training loop: a MiniLM cross-encoder fitted to soft targets on (query, doc) pairs.

A plain torch loop rather than a Trainer, for three reasons measured on 2-core CPUs: batches are packed
by length (title-only documents are ~25 tokens, title + text up to the budget, so sorting saves most of
the padding), bf16 autocast runs where the CPU has native bf16 (AVX-512 BF16 / AMX; fp32 elsewhere),
and the only console output is relsum's own line. The loss is BCE with soft targets on the single
logit, so the sigmoid output the scorer serves is a probability in the label scale. After training,
an affine map of the logit is fitted to minimise mean |r - l| (the GRPO reward) on the judged pairs of
train queries the student never saw (:func:`calibration_split`: a student scores its own training pairs
unlike new ones, and maps fitted on those were measured sharp enough for one recipe and far too unsure
for another; docs/reward_model.md) and folded into
the classifier, so the saved model is an ordinary sequence-classification checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

_LOADER_LOGGERS = ("transformers.modeling_utils", "transformers.utils.loading_report")


class _ToDebug(logging.Filter):
    """Turn the transformers loader report (a warning table) into a debug record of relsum's logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "LOAD REPORT" in message or "newly initialized" in message:
            logger.debug("transformers loader report: %s", message)
            return False
        return True


@contextlib.contextmanager
def quiet_loader() -> Iterator[None]:
    """Keep the loader's "classifier.weight | MISSING ... newly initialized" table (and its progress bar)
    off the console: a new head is what the bootstrap trains, not an error; the table goes to the debug
    log and relsum says in one line what it trains."""
    from transformers.utils import logging as hf_logging

    flt = _ToDebug()
    targets = [logging.getLogger(name) for name in _LOADER_LOGGERS]
    for target in targets:
        target.addFilter(flt)
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # the "Loading weights" bar, per model load
    try:
        yield
    finally:
        for target in targets:
            target.removeFilter(flt)
        if bar:
            hf_logging.enable_progress_bar()


def load_student(base: Path, seed: int):
    """The base encoder as a 1-logit sequence classifier (a fresh, seeded head when it has none)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    with quiet_loader():
        model, info = AutoModelForSequenceClassification.from_pretrained(
            str(base), num_labels=1, output_loading_info=True, trust_remote_code=False)
    missing = [k for k in info.get("missing_keys", ()) if "classifier" in k or "score" in k]
    if missing:
        logger.info("training a new relevance head (%s) on the encoder of %s: expected, not an error",
                    ", ".join(sorted(missing)), base)
    return model


def use_bf16(setting: str) -> bool:
    """``auto``: bf16 autocast only where the CPU has native bf16 dot products (else it is slower)."""
    if setting == "auto":
        from relsum.core.machine import native_bf16

        return native_bf16()
    return setting == "on"


def _batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Index batches of similar length (shuffled within length buckets, then batch order shuffled)."""
    noisy = lengths + rng.uniform(0, 4, size=len(lengths))  # ties broken randomly each epoch
    order = np.argsort(noisy, kind="stable")
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def _encode(tokenizer, queries: list[str], docs: list[str], max_length: int) -> list[list[int]]:
    enc = tokenizer(queries, docs, truncation="only_second", max_length=max_length)
    return enc["input_ids"]


def _collate(ids: list[list[int]], pad_id: int):
    import torch

    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):
        input_ids[i, :len(x)] = torch.tensor(x)
        mask[i, :len(x)] = 1
    return input_ids, mask


def predict_logits(model, tokenizer, queries: list[str], docs: list[str], max_length: int,
                   bf16: bool = False, batch_size: int = 64) -> np.ndarray:
    """Raw logits of ``model`` (eval mode) for the pairs, batched by length."""
    import torch

    ids = _encode(tokenizer, queries, docs, max_length)
    order = np.argsort([len(x) for x in ids])
    out = np.zeros(len(ids), dtype=np.float32)
    model.eval()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(ids), batch_size):
            idx = order[start:start + batch_size]
            input_ids, mask = _collate([ids[i] for i in idx], tokenizer.pad_token_id)
            out[idx] = model(input_ids=input_ids, attention_mask=mask).logits[:, 0].float().numpy()
    return out


def view_pairs(examples) -> tuple[np.ndarray, np.ndarray]:
    """(partner, direction) per example row: for the title + text row of a judged pair, the row index of the
    same pair's title-only row and +1 (label >= 0.75: text should lift the score) or -1 (label <= 0.25:
    text should lower it); -1 and 0 elsewhere (teacher pairs, middle labels, pairs without a title row)."""
    import pandas as pd

    partner = np.full(len(examples), -1)
    direction = np.zeros(len(examples))
    if "pair" not in examples:
        return partner, direction
    view, target = examples["view"].to_numpy(), examples["target"].to_numpy(float)
    title_row = pd.Series(np.flatnonzero(view == "title"), index=examples["pair"].to_numpy()[view == "title"])
    sign = np.where(target >= 0.75, 1.0, np.where(target <= 0.25, -1.0, 0.0))
    mate = examples["pair"].map(title_row).to_numpy()  # NaN where the pair has no title row
    linked = (view == "text") & examples["judged"].to_numpy(bool) & ~np.isnan(mate) & (sign != 0)
    partner[linked], direction[linked] = mate[linked].astype(int), sign[linked]
    return partner, direction


def fit(model, tokenizer, queries: list[str], docs: list[str], targets: np.ndarray, *, epochs: int,
        batch_size: int, learning_rate: float, warmup_ratio: float, max_length: int, bf16: bool,
        seed: int, consistency: tuple[np.ndarray, np.ndarray] | None = None,
        consistency_weight: float = 0.0) -> dict:
    """Train ``model`` in place on soft targets in [0, 1]; returns steps, seconds, last epoch's loss.

    ``consistency`` (:func:`view_pairs`) adds ``consistency_weight`` x mean softplus(-d (z_text - z_title))
    over the batch's judged title + text rows, their title-only partners scored in a second forward pass."""
    import torch

    ids = _encode(tokenizer, queries, docs, max_length)
    partner, direction = consistency if consistency is not None else (None, None)
    lengths = np.array([len(x) for x in ids])
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    steps_per_epoch = math.ceil(len(ids) / batch_size)
    total = steps_per_epoch * epochs
    warmup = max(1, int(warmup_ratio * total))
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup))))
    y_all = torch.tensor(targets, dtype=torch.float32)
    model.train()
    start, step, last_loss = time.monotonic(), 0, float("nan")
    for epoch in range(epochs):
        losses = []
        for idx in _batches(lengths, batch_size, rng):
            input_ids, mask = _collate([ids[i] for i in idx], tokenizer.pad_token_id)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = model(input_ids=input_ids, attention_mask=mask).logits[:, 0]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y_all[idx])
            if partner is not None and consistency_weight > 0:
                rows = np.flatnonzero(partner[idx] >= 0)
                if len(rows):
                    p_ids, p_mask = _collate([ids[partner[idx[r]]] for r in rows], tokenizer.pad_token_id)
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                        z_title = model(input_ids=p_ids, attention_mask=p_mask).logits[:, 0].float()
                    d = torch.tensor(direction[idx[rows]], dtype=torch.float32)
                    margin = d * (logits.float()[torch.as_tensor(rows)] - z_title)
                    loss = loss + consistency_weight * torch.nn.functional.softplus(-margin).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            step += 1
        last_loss = float(np.mean(losses))
        logger.info("reward model epoch %d/%d: loss %.4f (%d steps, %.0f s)", epoch + 1, epochs, last_loss,
                    step, time.monotonic() - start)
    model.eval()
    return {"steps": step, "train_seconds": round(time.monotonic() - start, 2), "final_loss": last_loss,
            "max_token_length": int(lengths.max()), "truncated_share": float((lengths >= max_length).mean())}


def calibration_split(train, logged, share: float, seed: int, min_pairs: int = 0):
    """(train, logged, held-out judged pairs): ``share`` of the train queries (seeded, at least one, never
    all) leave the student's data, judged and search-log rows alike, so the calibration sees the student's
    scores on queries it never trained on, as the scorer later meets them. No held-out pairs (``None``:
    the calibration falls back to the training pairs) when ``share`` is 0, or, with a warning, when the
    held-out queries would have fewer than ``min_pairs`` judged pairs (a 2-parameter map fitted on a
    handful of pairs is noise, and those pairs are worth more as training data)."""
    ids = sorted(set(train["query_id"]))
    if share <= 0:
        return train, logged, None
    n = min(len(ids) - 1, max(1, round(share * len(ids))))
    held = {ids[i] for i in np.random.default_rng(seed).permutation(len(ids))[:n]} if n > 0 else set()
    is_held = train["query_id"].isin(held)
    if int(is_held.sum()) < max(1, min_pairs):
        logger.warning("calibration: holding out %d of %d train queries leaves %d judged pairs (< %d); "
                       "fitting it on the training pairs instead", len(held), len(ids), int(is_held.sum()),
                       min_pairs)
        return train, logged, None
    keep_log = None if logged is None else logged[~logged["query_id"].isin(held)]
    return train[~is_held], keep_log, train[is_held]


def calibration_docs(pairs, lead_n: int) -> tuple[list[str], list[str], np.ndarray]:
    """(queries, documents, labels): every held-out pair as title + text and as title + lead-``lead_n``,
    the documents the reward reads (the GRPO reward scores title + a short summary, between the two)."""
    from relsum.scoring.documents import join_title_text, lead_doc

    full = [join_title_text(t, x) for t, x in zip(pairs["title"], pairs["text"], strict=True)]
    lead = [lead_doc(t, x, lead_n) for t, x in zip(pairs["title"], pairs["text"], strict=True)]
    labels = pairs["label"].to_numpy(float)
    return pairs["query"].tolist() * 2, full + lead, np.concatenate([labels, labels])


def balance_weights(labels: np.ndarray) -> np.ndarray:
    """Pair weights under which relevant (label >= 0.5) and other pairs weigh half each (all 1 when one
    class is missing), so a fitted map does not follow the base rate of the queries it is fitted on."""
    labels = np.asarray(labels, dtype=float)
    relevant = labels >= 0.5
    n_rel = int(relevant.sum())
    if n_rel in (0, len(labels)):
        return np.ones(len(labels))
    return np.where(relevant, 0.5 / n_rel, 0.5 / (len(labels) - n_rel)) * len(labels)


def fit_calibration(logits: np.ndarray, labels: np.ndarray, balance: bool = False) -> tuple[float, float]:
    """(a, b) minimising the (weighted) mean |sigmoid(a * logit + b) - label| over a coarse-to-fine grid;
    (1, 0) kept unless it improves (the reward is an absolute error, which favours sharper scores than BCE
    gives). ``balance`` weighs relevant and other pairs half each (:func:`balance_weights`): an L1-optimal
    map is in effect a threshold set by the base rate, which varied 27-68% between slices of the train
    queries (docs/reward_model.md). The slope stays below ~4.6 on purpose: a near-binary score would leave
    GRPO little to climb; the shift spans +-6 (on held-out queries the optimum was measured at -3.25, the
    old grid's edge)."""
    weights = balance_weights(labels) if balance else np.ones(len(labels))

    def loss(a: float, b: float) -> float:
        return float(np.average(np.abs(1 / (1 + np.exp(-(a * logits + b))) - labels), weights=weights))

    best = (1.0, 0.0, loss(1.0, 0.0))
    for fine in (False, True):
        if fine:  # refine around the coarse optimum
            a_grid = np.linspace(best[0] * 0.85, best[0] * 1.15, 9)
            b_grid = np.linspace(best[1] - 0.25, best[1] + 0.25, 11)
        else:
            a_grid, b_grid = np.linspace(0.5, 4, 15), np.linspace(-6, 6, 49)
        for a in a_grid:
            for b in b_grid:
                value = loss(float(a), float(b))
                if value < best[2] - 1e-6:
                    best = (float(a), float(b), value)
    return best[0], best[1]


def fold_calibration(model, a: float, b: float) -> None:
    """Make the classifier emit ``a * logit + b`` (the saved checkpoint needs no extra layer)."""
    import torch

    head = model.classifier if hasattr(model, "classifier") else model.score
    with torch.no_grad():
        head.weight.mul_(a)
        if head.bias is not None:
            head.bias.mul_(a).add_(b)
