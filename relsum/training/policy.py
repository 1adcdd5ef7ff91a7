"""Loading the summarizer policy (any local causal-LM folder, optionally with a LoRA adapter) and LoRA.

Models come only from local folders: a hub id or a missing path is refused up front instead of
turning into a network call. ``trust_remote_code`` is never enabled. The tokenizer is set up for
batched generation (left padding, a pad token) because every consumer here generates in batches.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from relsum.training.config import PolicyConfig, TrainConfig

logger = logging.getLogger(__name__)


def _local_dir(path: str | Path, what: str) -> Path:
    p = Path(path).expanduser()
    if not str(path):
        raise ValueError(f"{what}: no folder given")
    if not p.is_dir():
        hint = " (hub ids are not supported: download the model to a local folder first)" if (
            not p.exists() and "/" in str(path) and not str(path).startswith((".", "/", "~"))) else ""
        raise FileNotFoundError(f"{what}: {path!s} is not a local folder{hint}")
    return p


def load_tokenizer(model_dir: str | Path) -> Any:
    """The policy tokenizer with left padding and a pad token (eos when the model has none)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(_local_dir(model_dir, "policy")), local_files_only=True,
                                        trust_remote_code=False)
    tok.padding_side = "left"
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise ValueError(f"{model_dir}: tokenizer has neither a pad nor an eos token")
        tok.pad_token = tok.eos_token
    return tok


def load_policy(model_dir: str | Path, adapter_dir: str | Path | None = None, *, merge: bool = False,
                bf16: bool = False, device: str | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) from a local causal-LM folder, with an optional PEFT adapter on top.

    ``merge=True`` folds the adapter into the base weights (faster inference, no PEFT wrapper).
    The model is returned in eval mode on ``device`` (default: cpu).
    """
    import torch
    from transformers import AutoModelForCausalLM

    base = _local_dir(model_dir, "policy")
    tokenizer = load_tokenizer(base)
    model = AutoModelForCausalLM.from_pretrained(
        str(base), local_files_only=True, trust_remote_code=False, use_safetensors=True,
        dtype=torch.bfloat16 if bf16 else torch.float32)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(_local_dir(adapter_dir, "adapter")), is_trainable=False)
        if merge:
            model = model.merge_and_unload()
    model.to(device or "cpu")
    model.eval()
    logger.info("loaded policy %s%s", base, f" + adapter {adapter_dir}" if adapter_dir else "")
    return model, tokenizer


def lora_config(cfg: PolicyConfig) -> Any:
    """The paper's LoRA (r=32, alpha=32) as a ``peft.LoraConfig`` for a causal LM."""
    from peft import LoraConfig

    targets: Any = cfg.target_modules
    if [t.lower() for t in targets] == ["all-linear"]:
        targets = "all-linear"
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM", bias="none")


def resolve_policy_dir(config: TrainConfig, catalog: pd.DataFrame | None = None) -> Path:
    """``config.policy.model_dir``, or the tiny default under ``<out_dir>/tiny_policy`` (built once).

    The tiny default is built from ``catalog`` (title, text) when it is not there yet; a folder that
    already holds a tiny-policy build is reused as is.
    """
    from relsum.training.tiny_policy import MARKER_FILE, build_tiny_policy

    if config.policy.model_dir:
        return _local_dir(config.policy.model_dir, "policy.model_dir")
    tiny_dir = Path(config.out_dir) / "tiny_policy"
    if (tiny_dir / MARKER_FILE).exists():
        return tiny_dir
    if catalog is None:
        raise ValueError("policy.model_dir is empty and no catalog was given to build the tiny default policy")
    logger.info("policy.model_dir is empty: building the tiny default policy at %s", tiny_dir)
    return build_tiny_policy(catalog.drop_duplicates(subset=["title", "text"]), tiny_dir, config.tiny)


def prompt_cap(model_dir: str | Path, requested: int) -> int:
    """``requested``, lowered to the warm-up cap when ``model_dir`` is a tiny-policy build."""
    from relsum.training.tiny_policy import warm_up_prompt_cap

    cap = warm_up_prompt_cap(model_dir)
    if cap is not None and requested > cap:
        logger.info("prompt cap %d lowered to %d, the cap the tiny policy at %s was warmed up with",
                    requested, cap, model_dir)
        return cap
    return requested
