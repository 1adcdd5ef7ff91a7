"""ReLSum_GRPO: LoRA-GRPO of the summarizer against the frozen cross-encoder reward, through TRL.

The same code trains the tiny CPU policy, SmolLM2-135M-Instruct (``policy.model_dir=smollm2``) and a
local Mistral-7B-Instruct folder; only ``config.policy.model_dir`` (and ``bf16`` / ``grpo.extra`` on GPU)
change. The policy sees only the prompt (title + description); query and label travel as extra dataset
columns that TRL hands to the reward function, mirroring the paper's "the query is the environment" design.

Prompts reach TRL as finished strings (chat template, system line and answer start already applied, see
:func:`relsum.policy.prompt.render_prompts`), so GRPO, DPO and serving feed the model the same tokens;
completions end at the first line break (the model's EOS list is widened with
:func:`relsum.policy.prompt.stop_token_ids`, which TRL also uses to mask what follows).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd

from relsum.policy.load import PROMPT_INFO_FILE, load_policy, lora_config
from relsum.policy.prompt import (
    render_prompts,
    resolve_chat_template,
    resolve_variant,
    stop_token_ids,
    trainer_text,
)
from relsum.policy.reward import RelevanceReward
from relsum.training.base_policy import resolve_policy_dir
from relsum.training.config import TrainConfig
from relsum.training.options import SummaryReward, product_rows

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("query", "product_id", "title", "text", "label")


def prepare_train_df(train_df: pd.DataFrame, config: TrainConfig) -> pd.DataFrame:
    """Checked training rows: required columns present, labels in [0, 1], optional row cap (seeded)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in train_df.columns]
    if missing:
        raise ValueError(f"training data lacks columns {missing}; has {list(train_df.columns)}")
    df = train_df.reset_index(drop=True)
    if df.empty:
        raise ValueError("training data is empty")
    labels = pd.to_numeric(df["label"], errors="coerce")
    bad = labels.isna() | (labels < 0) | (labels > 1)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} training rows have a label outside [0, 1] (first at "
                         f"row {int(bad.idxmax())})")
    for col in ("query", "title"):
        blank = df[col].isna() | (df[col].astype(str).str.strip() == "")
        if blank.any():
            raise ValueError(f"{int(blank.sum())} training rows have an empty {col}")
    df = df.assign(label=labels.astype(float), text=df["text"].fillna("").astype(str),
                   product_id=df["product_id"].astype(str))
    if config.max_train_rows and len(df) > config.max_train_rows:
        df = df.sample(n=config.max_train_rows, random_state=config.seed).reset_index(drop=True)
    return df


def prompt_column(tokenizer: Any, df: pd.DataFrame, config: TrainConfig) -> list[str]:
    """Per-row prompt strings as TRL tokenizes them (chat template applied here when in use, no double
    BOS)."""
    templated = resolve_chat_template(tokenizer, config.policy.use_chat_template)
    strings = render_prompts(tokenizer, df["title"].tolist(), df["text"].tolist(),
                             max_prompt_tokens=config.policy.max_prompt_tokens, use_chat_template=templated,
                             variant=config.policy.prompt)
    return [trainer_text(tokenizer, s, templated) for s in strings]


def prepare_policy(model: Any, tokenizer: Any, config: TrainConfig) -> dict[str, Any]:
    """Make the loaded policy stop at the first line break (TRL reads the model's EOS list) and return
    what to record beside the adapter: prompt variant, chat template use, precision."""
    import torch

    model.generation_config.eos_token_id = stop_token_ids(tokenizer)
    templated = resolve_chat_template(tokenizer, config.policy.use_chat_template)
    dtype = next(model.parameters()).dtype
    return {"prompt": resolve_variant(config.policy.prompt, templated).name, "chat_template": templated,
            "dtype": "bf16" if dtype == torch.bfloat16 else "fp32"}


def write_policy_info(adapter_dir: Path, info: dict[str, Any]) -> None:
    """``relsum_prompt.json`` beside the adapter: serving must use the prompt variant it was trained with,
    and on the base it was trained on (``base``: path and fingerprint of the folder PEFT recorded in
    ``adapter_config.json``, compared at load by :func:`relsum.policy.load.check_adapter`)."""
    from relsum.data.io import write_json_atomic
    from relsum.policy.files import adapter_config, base_record

    base = str(adapter_config(adapter_dir).get("base_model_name_or_path") or "")
    if base and Path(base).is_dir():
        info = {**info, "base": base_record(base)}
    write_json_atomic(info, adapter_dir / PROMPT_INFO_FILE)


def save_adapter(model: Any, adapter_dir: Path) -> Path:
    """Write the LoRA adapter (safetensors) to ``adapter_dir`` atomically: a staging sibling swapped in
    for the whole folder (:func:`relsum.data.atomic_dir.staged_folder`; a previous adapter is replaced)."""
    from relsum.data.atomic_dir import is_model_folder, staged_folder

    with staged_folder(adapter_dir, None, "adapter save", lock=False, ours=is_model_folder) as staging:
        model.save_pretrained(str(staging), safe_serialization=True)
    return adapter_dir


def train_grpo(config: TrainConfig, train_df: pd.DataFrame, scorer: Any, *,
               callbacks: list | None = None) -> dict[str, Any]:
    """Train a LoRA adapter with TRL's GRPOTrainer; save it to ``<out_dir>/adapter``.

    Returns ``adapter_dir``, ``policy_dir``, ``log_history``, ``train_seconds``, ``reward_seconds``,
    ``reward_calls``, ``steps``, ``rows``, ``seconds_per_step``, ``reward_fraction`` and, for callers
    that want to generate right away, the trained in-memory ``model`` (a PeftModel) and ``tokenizer``.
    """
    from datasets import Dataset
    from trl import GRPOTrainer

    if config.algo != "grpo":
        logger.warning("train_grpo called with algo=%r; training GRPO anyway", config.algo)
    df = prepare_train_df(train_df, config)
    out = Path(config.out_dir)
    policy_dir = resolve_policy_dir(config, df)
    model, tokenizer = load_policy(policy_dir, dtype=config.policy.load_dtype(),
                                   device="cuda" if config.policy.bf16 else None)
    info = prepare_policy(model, tokenizer, config)
    model.train()
    opt = config.options
    if opt.product_reward:  # one prompt per product; its queries and labels ride along as list columns
        df = product_rows(df, opt.product_max_queries, config.seed)
        columns = {"queries": df["queries"].tolist(), "labels": df["labels"].tolist()}
    else:
        columns = {"query": df["query"].astype(str).tolist(), "label": df["label"].tolist()}
    dataset = Dataset.from_dict({
        "prompt": prompt_column(tokenizer, df, config), **columns, "title": df["title"].astype(str).tolist(),
        "product_id": df["product_id"].tolist(), **({"text": df["text"].tolist()} if opt.reward_options_on()
                                                    else {}),
    })
    reward: Any = (SummaryReward(scorer, opt, config.grpo.num_generations) if opt.reward_options_on()
                   else RelevanceReward(scorer))
    args = config.grpo.to_grpo_config(
        str(out / "trainer"), max_completion_length=config.policy.max_summary_tokens, seed=config.seed,
        report_to=config.report_to, bf16=config.policy.bf16, top_entropy_quantile=opt.top_entropy_quantile)
    trainer_cls, extra_kwargs = GRPOTrainer, {}
    if opt.variance_credit > 0:
        from relsum.training.credit import credit_trainer_class

        trainer_cls, extra_kwargs = credit_trainer_class(), {"credit_alpha": opt.variance_credit}
    trainer = trainer_cls(model=model, reward_funcs=[reward], args=args, train_dataset=dataset,
                          processing_class=tokenizer, peft_config=lora_config(config.policy),
                          callbacks=callbacks, **extra_kwargs)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    from relsum.training import distributed

    adapter_dir = out / "adapter"
    if distributed.is_main_process():  # DDP: one adapter, written by rank 0 (weights are equal on all ranks)
        save_adapter(trainer.model, adapter_dir)
        write_policy_info(adapter_dir, info)
    distributed.barrier()
    steps = int(trainer.state.global_step)
    logger.info("GRPO: %d steps in %.1fs (reward %.1f%%), adapter at %s", steps, seconds,
                100 * reward.total_seconds / max(seconds, 1e-9), adapter_dir)
    return {
        "algo": "grpo", "adapter_dir": str(adapter_dir), "policy_dir": str(policy_dir),
        "log_history": list(trainer.state.log_history), "train_seconds": seconds,
        "reward_seconds": reward.total_seconds, "reward_calls": reward.calls, "steps": steps,
        "rows": len(df), "seconds_per_step": seconds / max(steps, 1),
        "reward_fraction": reward.total_seconds / max(seconds, 1e-9),
        "model": trainer.model, "tokenizer": tokenizer, "reward_stats": reward.stats(), **info,
    }
