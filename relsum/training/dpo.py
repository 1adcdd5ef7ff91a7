"""ReLSum_DPO: preference pairs sampled from the reference policy, ranked by the reward, then TRL DPO.

Two summaries per prompt (``dpo.pairing=paper``) are sampled from the (frozen) reference policy at the
paper's temperature and scored with the same ``-|r(q, [t; s]) - l|`` reward as GRPO; the better one is
``chosen``. Pairs whose rewards differ by less than ``dpo.min_reward_margin`` carry no preference signal
(often the two samples are identical) and are dropped, and counted, rather than trained on as noise.
``dpo.pairing=best_worst`` pairs the best and the worst of N samples per product by the product-level
reward instead (:func:`best_worst_pairs`).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from relsum.policy.generate import generate_summaries
from relsum.policy.load import load_policy, lora_config
from relsum.policy.prompt import resolve_chat_template
from relsum.policy.reward import relevance_rewards
from relsum.training.base_policy import resolve_policy_dir
from relsum.training.config import TrainConfig
from relsum.training.grpo import (
    prepare_policy,
    prepare_train_df,
    prompt_column,
    save_adapter,
    write_policy_info,
)

logger = logging.getLogger(__name__)


BEST_WORST_COLUMNS = ["prompt", "chosen", "rejected", "product_id", "title", "queries", "reward_chosen",
                      "reward_rejected"]


def best_worst_pairs(model: Any, tokenizer: Any, df: pd.DataFrame, scorer: Any,
                     config: TrainConfig) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``dpo.pairing=best_worst``: one pair per product, the best vs the worst of ``samples_per_product``
    samples by the product-level reward (mean over the product's training queries, as RFT and
    ``options.product_reward``). Why: the paper's two samples per (query, product) row mostly differ by
    scorer noise on one query; N samples judged on all of the product's queries give a wider, truer margin.
    """
    from relsum.training.options import product_rows, product_subset
    from relsum.training.rft import completion_for, product_sample_rewards, sample_products_n

    d = config.dpo
    products = product_rows(df, 0, config.seed)
    has_text = products["text"].str.strip() != ""
    work = products[has_text].reset_index(drop=True)
    pick = product_subset(len(work), d.max_products, config.seed)
    stats: dict[str, Any] = {"pairing": "best_worst", "rows": len(df), "products": len(products),
                             "skipped_empty_text": int((~has_text).sum()),
                             "not_drawn": len(work) - len(pick)}
    work = work.iloc[pick].reset_index(drop=True)
    start = time.perf_counter()
    samples = sample_products_n(model, tokenizer, work, config, d.samples_per_product, d.temperature,
                                d.generation_batch_size, seed=config.seed) if len(work) else []
    stats["generation_seconds"] = time.perf_counter() - start
    rewards = product_sample_rewards(scorer, work, samples) if len(work) else np.zeros((0, 2))
    margin = rewards.max(axis=1) - rewards.min(axis=1) if len(work) else np.zeros(0)
    keep = margin >= max(d.min_reward_margin, 1e-12)
    stats.update(near_ties_dropped=int((~keep).sum()), pairs=int(keep.sum()),
                 mean_margin=float(margin[keep].mean()) if keep.any() else 0.0)
    prompts = prompt_column(tokenizer, work, config) if len(work) else []
    rows = []
    for i in np.flatnonzero(keep):
        best, worst = int(rewards[i].argmax()), int(rewards[i].argmin())
        rows.append({"prompt": prompts[i], "chosen": completion_for(samples[i][best], prompts[i]),
                     "rejected": completion_for(samples[i][worst], prompts[i]),
                     "product_id": work.at[i, "product_id"], "title": work.at[i, "title"],
                     "queries": len(work.at[i, "queries"]), "reward_chosen": float(rewards[i, best]),
                     "reward_rejected": float(rewards[i, worst])})
    logger.info("DPO best-vs-worst pairs: %d of %d products, %d near-ties dropped, %d without text, %d not "
                "drawn (dpo.max_products)", stats["pairs"], len(products), stats["near_ties_dropped"],
                stats["skipped_empty_text"], stats["not_drawn"])
    return pd.DataFrame(rows, columns=BEST_WORST_COLUMNS), stats


def build_preference_pairs(model: Any, tokenizer: Any, train_df: pd.DataFrame, scorer: Any,
                           config: TrainConfig) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(pairs, stats): columns prompt, chosen, rejected, query, product_id, title, label, reward_chosen,
    reward_rejected (+ query_id when present). Rows with empty text are skipped (no summary to prefer).
    With ``dpo.pairing=best_worst``, one pair per product instead (:func:`best_worst_pairs`).
    """
    df = prepare_train_df(train_df, config)
    if config.dpo.pairing == "best_worst":
        return best_worst_pairs(model, tokenizer, df, scorer, config)
    d = config.dpo
    templated = resolve_chat_template(tokenizer, config.policy.use_chat_template)
    has_text = df["text"].str.strip() != ""
    work = df[has_text].reset_index(drop=True)
    stats: dict[str, Any] = {"pairing": "paper", "rows": len(df),
                             "skipped_empty_text": int((~has_text).sum())}
    start = time.perf_counter()
    samples = generate_summaries(
        model, tokenizer, work["title"].tolist(), work["text"].tolist(),
        max_new_tokens=config.policy.max_summary_tokens, batch_size=d.generation_batch_size, do_sample=True,
        temperature=d.temperature, num_return_sequences=d.samples_per_prompt, seed=config.seed,
        use_chat_template=templated, max_prompt_tokens=config.policy.max_prompt_tokens,
        prompt=config.policy.prompt,
    ) if len(work) else []
    stats["generation_seconds"] = time.perf_counter() - start
    k = d.samples_per_prompt
    flat = [s for row in samples for s in row]
    rep = lambda col: np.repeat(work[col].to_numpy(), k).tolist()  # noqa: E731
    rewards = relevance_rewards(scorer, rep("query"), rep("title"), flat,
                                rep("label")).reshape(len(work), k) \
        if len(work) else np.zeros((0, k))
    best, worst = rewards.argmax(axis=1), rewards.argmin(axis=1)
    margin = rewards.max(axis=1) - rewards.min(axis=1)
    keep = margin >= max(d.min_reward_margin, 1e-12)
    stats.update(near_ties_dropped=int((~keep).sum()), pairs=int(keep.sum()),
                 mean_margin=float(margin[keep].mean()) if keep.any() else 0.0)
    prompts = prompt_column(tokenizer, work, config)
    # A completion that continues text ("... are:", an answer start) starts with a space, as sampled; one
    # after a chat template's assistant header ("...assistant\n") does not.
    wrap = lambda s, p: s if p[-1:].isspace() else " " + s  # noqa: E731
    rows = []
    for i in np.flatnonzero(keep):
        row = {"prompt": prompts[i], "chosen": wrap(samples[i][best[i]], prompts[i]),
               "rejected": wrap(samples[i][worst[i]], prompts[i]),
               "query": work.at[i, "query"], "product_id": work.at[i, "product_id"],
               "title": work.at[i, "title"],
               "label": float(work.at[i, "label"]), "reward_chosen": float(rewards[i, best[i]]),
               "reward_rejected": float(rewards[i, worst[i]])}
        if "query_id" in work.columns:
            row["query_id"] = work.at[i, "query_id"]
        rows.append(row)
    pairs = pd.DataFrame(rows, columns=["prompt", "chosen", "rejected", "query", "product_id", "title",
                                        "label", "reward_chosen", "reward_rejected"] + (
                                            ["query_id"] if "query_id" in work.columns else []))
    logger.info("DPO pairs: %d kept, %d near-ties dropped, %d rows without text", stats["pairs"],
                stats["near_ties_dropped"], stats["skipped_empty_text"])
    return pairs, stats


def train_dpo(config: TrainConfig, train_df: pd.DataFrame, scorer: Any, *,
              callbacks: list | None = None) -> dict[str, Any]:
    """Sample and rank pairs with the reference policy, then train a LoRA adapter with TRL's DPOTrainer.

    The adapter goes to ``<out_dir>/adapter``; pairs are returned (``pairs``) for the caller to store.
    """
    from datasets import Dataset
    from trl import DPOTrainer

    df = prepare_train_df(train_df, config)
    out = Path(config.out_dir)
    policy_dir = resolve_policy_dir(config, df)
    device = "cuda" if config.policy.bf16 else None
    model, tokenizer = load_policy(policy_dir, dtype=config.policy.load_dtype(), device=device)
    info = prepare_policy(model, tokenizer, config)
    pairs, stats = build_preference_pairs(model, tokenizer, df, scorer, config)
    if pairs.empty:
        raise ValueError(f"no preference pairs left after dropping near-ties: {stats}")
    model.train()
    dataset = Dataset.from_dict({c: pairs[c].tolist() for c in ("prompt", "chosen", "rejected")})
    # A prompt can exceed the cap when the frame alone (chat wrapper, system line, title) does; TRL would
    # cut it, so the limit is the longest prompt actually built, plus the summary and its end tokens.
    longest = max(len(ids) for ids in tokenizer(pairs["prompt"].tolist())["input_ids"])
    args = config.dpo.to_dpo_config(
        str(out / "trainer"),
        max_length=max(longest, config.policy.max_prompt_tokens) + config.policy.max_summary_tokens + 8,
        seed=config.seed, report_to=config.report_to, bf16=config.policy.bf16)
    trainer = DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=lora_config(config.policy), callbacks=callbacks)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    adapter_dir = save_adapter(trainer.model, out / "adapter")
    write_policy_info(adapter_dir, info)
    steps = int(trainer.state.global_step)
    logger.info("DPO: %d pairs, %d steps in %.1fs, adapter at %s", len(pairs), steps, seconds, adapter_dir)
    return {
        "algo": "dpo", "adapter_dir": str(adapter_dir), "policy_dir": str(policy_dir), "pairs": pairs,
        "pair_stats": stats, "log_history": list(trainer.state.log_history), "train_seconds": seconds,
        "steps": steps, "rows": len(df), "seconds_per_step": seconds / max(steps, 1),
        "model": trainer.model, "tokenizer": tokenizer, **info,
    }
