"""ReLSum_RFT: rejection-sampling fine-tuning of the LoRA summarizer (best of N by the product-level reward).

Why: on 2 CPU cores the GRPO demo runs ~12 updates of 2 prompts x 4 completions, so ~24 of the ~360
training products are ever seen and the held-out reward does not move. RFT spends the same CPU on
sampling every training product once per round, batched (each prompt computed once for its N samples,
:func:`relsum.policy.generate.shared_prefill`), and then on cheap supervised steps: no generation
inside the optimizer loop, no per-step reward call.

Per round: sample N summaries of every training product with the current policy, score each on the
product-level reward (the mean of ``-|r(q,[t;s]) - l|`` over the product's training queries, the same
reward as ``options.product_reward``: one summary serves all of its queries), keep the best one (when it
beats the N-sample mean by ``rft.min_gain``), and train the LoRA on (prompt, best summary) with TRL's
``SFTTrainer`` (loss on the completion only). Round 2 samples from the round-1 adapter. The base weights
never change: PEFT freezes them and only the LoRA is saved.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from relsum.core.errors import InputError
from relsum.policy.generate import generate_summaries
from relsum.policy.load import load_policy, lora_config
from relsum.policy.prompt import resolve_chat_template
from relsum.policy.reward import product_relevance_rewards
from relsum.training.base_policy import resolve_policy_dir
from relsum.training.config import TrainConfig
from relsum.training.grpo import (
    prepare_policy,
    prepare_train_df,
    prompt_column,
    save_adapter,
    write_policy_info,
)
from relsum.training.options import product_rows, product_subset

logger = logging.getLogger(__name__)

SAMPLE_COLUMNS = ("round", "product_id", "title", "prompt", "completion", "reward_best", "reward_mean",
                  "reward_worst", "queries")


def completion_for(summary: str, prompt: str) -> str:
    """The completion as the trainer sees it: a completion that continues text ("... are:") starts with a
    space, as sampled; one after a chat template's assistant header does not (as in the DPO pairs)."""
    return summary if prompt[-1:].isspace() else " " + summary


def sample_products_n(model: Any, tokenizer: Any, products: pd.DataFrame, config: TrainConfig, n: int,
                      temperature: float, batch_size: int, seed: int) -> list[list[str]]:
    """``n`` sampled summaries per product row (title, text), one batched pass with the shared prefill."""
    from relsum.policy.served import served_summary

    templated = resolve_chat_template(tokenizer, config.policy.use_chat_template)
    samples = generate_summaries(
        model, tokenizer, products["title"].tolist(), products["text"].tolist(),
        max_new_tokens=config.policy.max_summary_tokens, batch_size=batch_size, do_sample=True,
        temperature=temperature, num_return_sequences=n, seed=seed, use_chat_template=templated,
        max_prompt_tokens=config.policy.max_prompt_tokens, prompt=config.policy.prompt, share_prefill=True)
    # the served string, title-aware, as the GRPO reward sees it: what serving strips earns nothing
    return [[served_summary(s, title=t) for s in row]
            for row, t in zip(samples, products["title"].tolist(), strict=True)]


def product_sample_rewards(scorer: Any, products: pd.DataFrame, samples: list[list[str]]) -> np.ndarray:
    """(products, n) product-level rewards of the samples (one scorer call for all of them)."""
    if not samples:
        return np.zeros((0, 0))
    n = len(samples[0])
    rep = lambda col: [v for v in products[col].tolist() for _ in range(n)]  # noqa: E731
    flat = [s for row in samples for s in row]
    return product_relevance_rewards(scorer, rep("queries"), rep("title"), flat,
                                     rep("labels")).reshape(len(samples), n)


def select_best(products: pd.DataFrame, samples: list[list[str]], rewards: np.ndarray, prompts: list[str],
                min_gain: float, round_index: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(kept, stats): per product the best sample when it is not empty and beats the samples' mean by
    ``min_gain``; the rejected products are counted, not silently lost."""
    if rewards.shape != (len(products), len(samples[0]) if samples else 0) or not len(products):
        raise ValueError(f"rewards {rewards.shape} do not match {len(products)} products' samples")
    best, top, mean = rewards.argmax(axis=1), rewards.max(axis=1), rewards.mean(axis=1)
    rows, empty, low_gain = [], 0, 0
    for i in range(len(products)):
        summary = samples[i][best[i]]
        if not summary.strip():
            empty += 1
            continue
        if top[i] - mean[i] < min_gain:
            low_gain += 1
            continue
        rows.append({"round": round_index, "product_id": products["product_id"].iat[i],
                     "title": products["title"].iat[i], "prompt": prompts[i],
                     "completion": completion_for(summary, prompts[i]), "reward_best": float(top[i]),
                     "reward_mean": float(mean[i]), "reward_worst": float(rewards[i].min()),
                     "queries": len(products["queries"].iat[i])})
    kept = pd.DataFrame(rows, columns=list(SAMPLE_COLUMNS))
    stats = {"round": round_index, "products": len(products), "kept": len(kept), "empty_best": empty,
             "below_min_gain": low_gain,
             "sample_reward_mean": float(rewards.mean()), "best_reward_mean": float(top.mean()),
             "kept_gain_mean": float((kept["reward_best"] - kept["reward_mean"]).mean())
             if len(kept) else 0.0}
    return kept, stats


def train_rft(config: TrainConfig, train_df: pd.DataFrame, scorer: Any, *, callbacks: list | None = None,
              stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Best-of-N sampling and SFT of a LoRA adapter, ``config.rft.rounds`` times; adapter to
    ``<out_dir>/adapter``.

    ``stop`` (checked before each round's sampling) lets a caller with a budget end early, after at least
    one round. Returns the same keys as :func:`relsum.training.dpo.train_dpo` with ``samples`` (the kept
    summaries of every round, for the caller to store) and ``round_stats`` in place of the pairs.
    """
    from datasets import Dataset
    from trl import SFTTrainer

    r = config.rft
    df = prepare_train_df(train_df, config)
    out = Path(config.out_dir)
    products = product_rows(df, r.max_queries, config.seed)
    has_text = products["text"].str.strip() != ""
    products = products[has_text].reset_index(drop=True)
    if products.empty:
        raise InputError(f"rft: none of the {len(has_text)} training products has a description (text) to "
                         "summarize")
    if (~has_text).any():
        logger.warning("rft: %d of %d training products have no description and are skipped",
                       int((~has_text).sum()), len(has_text))
    policy_dir = resolve_policy_dir(config, df)
    model, tokenizer = load_policy(policy_dir, dtype=config.policy.load_dtype(),
                                   device="cuda" if config.policy.bf16 else None)
    info = prepare_policy(model, tokenizer, config)
    prompts = prompt_column(tokenizer, products, config)
    longest = max(len(ids) for ids in tokenizer(prompts)["input_ids"])
    max_length = max(longest, config.policy.max_prompt_tokens) + config.policy.max_summary_tokens + 8
    current, trainer = model, None
    kept_all, round_stats, history = [], [], []
    sample_seconds = train_seconds = 0.0
    steps = 0
    for round_index in range(r.rounds):
        if round_index and stop is not None and stop():
            logger.info("rft: stopped before round %d", round_index + 1)
            break
        start = time.perf_counter()
        pick = product_subset(len(products), r.products_per_round, config.seed + round_index)
        work = products.iloc[pick].reset_index(drop=True)
        samples = sample_products_n(current, tokenizer, work, config, r.samples_per_product,
                                    r.temperature, r.generation_batch_size, seed=config.seed + round_index)
        rewards = product_sample_rewards(scorer, work, samples)
        kept, stats = select_best(work, samples, rewards, [prompts[i] for i in pick], r.min_gain, round_index)
        stats["products_total"] = len(products)
        stats["sample_seconds"] = time.perf_counter() - start
        sample_seconds += stats["sample_seconds"]
        logger.info("rft round %d: %d of %d products kept, best-of-%d reward %.4f against %.4f per sample",
                    round_index + 1, stats["kept"], stats["products"], r.samples_per_product,
                    stats["best_reward_mean"], stats["sample_reward_mean"])
        if kept.empty:
            if trainer is None:
                raise InputError(f"rft: no summary kept to train on (every best sample empty or below "
                                 f"rft.min_gain={r.min_gain}): {stats}")
            round_stats.append(stats)
            break
        kept_all.append(kept)
        dataset = Dataset.from_dict({"prompt": kept["prompt"].tolist(),
                                     "completion": kept["completion"].tolist()})
        # One output_dir and seed for every round: TRL's MLflow callback logs the arguments as params
        # each round, and MLflow refuses a changed value.
        args = r.to_sft_config(str(out / "trainer"), max_length=max_length, seed=config.seed,
                               report_to=config.report_to, bf16=config.policy.bf16)
        current.train()
        trainer = SFTTrainer(model=current, args=args, train_dataset=dataset, processing_class=tokenizer,
                             peft_config=lora_config(config.policy) if trainer is None else None,
                             callbacks=callbacks)
        start = time.perf_counter()
        trainer.train()
        stats["train_seconds"] = time.perf_counter() - start
        train_seconds += stats["train_seconds"]
        stats["steps"] = int(trainer.state.global_step)
        steps += stats["steps"]
        history.extend({**row, "rft_round": round_index} for row in trainer.state.log_history)
        round_stats.append(stats)
        current = trainer.model
        if trainer.control.should_training_stop and trainer.state.global_step < trainer.state.max_steps:
            logger.info("rft: a callback stopped training in round %d", round_index + 1)
            break
    adapter_dir = save_adapter(current, out / "adapter")
    write_policy_info(adapter_dir, info)
    samples_df = pd.concat(kept_all, ignore_index=True) if kept_all else pd.DataFrame(columns=SAMPLE_COLUMNS)
    logger.info("RFT: %d rounds, %d steps, sampling %.1fs, training %.1fs, adapter at %s", len(round_stats),
                steps, sample_seconds, train_seconds, adapter_dir)
    return {
        "algo": "rft", "adapter_dir": str(adapter_dir), "policy_dir": str(policy_dir), "samples": samples_df,
        "round_stats": round_stats, "log_history": history, "train_seconds": train_seconds,
        "sample_seconds": sample_seconds, "steps": steps, "rows": len(df), "products": len(products),
        "seconds_per_step": train_seconds / max(steps, 1), "model": current, "tokenizer": tokenizer, **info,
    }
