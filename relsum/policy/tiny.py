"""The embedded default policy: a tiny Mistral-architecture causal LM built locally from the catalog.

Nothing is downloaded. A byte-level BPE tokenizer is trained on the catalog and the prompt frame, a
small ``MistralForCausalLM`` is initialised from a seed, and a short supervised warm-up teaches it the
task's output *shape* on extractive pseudo-summaries (the description phrases and ``name: value``
attributes that the title does not already contain). The warm-up gives GRPO/DPO a policy whose
samples are attribute lists rather than noise, so the RL stage has something to rank; it is not a
substitute for a real instruct model (production uses a local Mistral-7B-Instruct folder).
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from pathlib import Path
from typing import Any

import pandas as pd

from relsum.data.atomic_dir import is_model_folder, staged_folder
from relsum.policy.config import TinyPolicyConfig
from relsum.policy.prompt import FRAME, INSTRUCTION, build_prompt, fit_texts, neutralise

logger = logging.getLogger(__name__)

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
MARKER_FILE = "relsum_policy.json"
_WORD = re.compile(r"[a-z0-9]+")
_ATTR = re.compile(r"^([^:]{1,60}):\s*(\S.*)$")
_PHRASE_SPLIT = re.compile(r"[.;!?,]\s+|\s+[-\u2013\u2014]\s+")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def pseudo_items(title: Any, text: Any) -> list[str]:
    """Description phrases and ``name: value`` attributes of ``text`` that add words to the title.

    ``text`` is the clean catalog text: description, then `` | ``-separated attributes. An attribute is
    kept when its value words are not all in the title; a description phrase when it has a word of
    3+ characters that the title lacks. Order follows the text; duplicates are dropped.
    """
    title_words = _words(neutralise(title))
    items: list[str] = []
    seen: set[str] = set()
    for segment in (s.strip() for s in neutralise(text).split("|")):
        if not segment:
            continue
        match = _ATTR.match(segment)
        if match and len(match.group(1).split()) <= 6:
            value_words = _words(match.group(2))
            candidates = [f"{match.group(1).strip()}: {match.group(2).strip()}"] if (
                value_words and not value_words <= title_words) else []
        else:
            candidates = [p.strip(" .,;") for p in _PHRASE_SPLIT.split(segment)]
            candidates = [p for p in candidates if {w for w in _words(p) if len(w) >= 3} - title_words]
        for item in candidates:
            key = item.lower()
            if item and key not in seen:
                seen.add(key)
                items.append(item)
    return items


def pseudo_summary(title: Any, text: Any, tokenizer: Any = None, max_tokens: int = 48) -> str:
    """:func:`pseudo_items` joined with ", ", capped at ``max_tokens`` (whole items; words if needed)."""
    return join_items(pseudo_items(title, text), tokenizer, max_tokens)


def join_items(items: list[str], tokenizer: Any = None, max_tokens: int = 48) -> str:
    """``items`` joined with ", ", capped at ``max_tokens`` of ``tokenizer`` (whole items; words if
    needed)."""
    if tokenizer is None:
        return ", ".join(items)
    out: list[str] = []
    for item in items:
        candidate = ", ".join([*out, item])
        if len(tokenizer(" " + candidate, add_special_tokens=False)["input_ids"]) <= max_tokens:
            out.append(item)
        elif not out:
            ids = tokenizer(" " + item, add_special_tokens=False)["input_ids"][:max_tokens]
            return tokenizer.decode(ids).strip()
        else:
            break
    return ", ".join(out)


def warm_up_prompt_cap(model_dir: str | Path) -> int | None:
    """The prompt token cap a tiny-policy build was warmed up with, or None for any other model folder.

    Its rotary positions past that cap never saw training, so longer prompts only add noise.
    """
    marker = Path(model_dir) / MARKER_FILE
    if not marker.exists():
        return None
    return int(json.loads(marker.read_text(encoding="utf-8"))["config"]["max_prompt_tokens"])


def _train_tokenizer(corpus: list[str], vocab_size: int, max_positions: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, BOS, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tok.token_to_id(BOS))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   padding_side="left", model_max_length=max_positions)


def warm_up_examples(catalog: pd.DataFrame, tokenizer: Any, cfg: TinyPolicyConfig) -> tuple[list, int]:
    """(prompt ids, completion ids) pairs: per product the in-order pseudo-summary plus ``cfg.variants``
    seeded shuffles of a random subset of the items the (cut) prompt shows.

    The shuffled variants make the next item unpredictable from position alone, so the model must find
    it in the prompt and copy it: that is the skill GRPO then steers (which attributes, in what order).
    """
    rng = random.Random(cfg.seed)
    examples, empty = [], 0
    titles = catalog["title"].tolist()
    for title, shown in zip(titles, fit_texts(tokenizer, titles, catalog["text"].tolist(),
                                              cfg.max_prompt_tokens),
                            strict=True):
        items = pseudo_items(title, shown)
        if not items:
            empty += 1
            continue
        p_ids = tokenizer(build_prompt(title, shown))["input_ids"]
        variants = [items] + [rng.sample(items, rng.randint(1, len(items))) for _ in range(cfg.variants)]
        for chosen in variants:
            summary = join_items(chosen, tokenizer, cfg.max_summary_tokens)
            c_ids = tokenizer(" " + summary, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            examples.append((p_ids, c_ids))
    return examples, empty


def _batches(examples: list, batch_size: int, rng: random.Random) -> list[list]:
    """Length-bucketed batches (sorted within shuffled chunks) so padding stays small."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    batches = []
    for start in range(0, len(order), batch_size * 8):
        chunk = sorted(order[start:start + batch_size * 8], key=lambda i: len(examples[i][0]))
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def _collate(examples: list, idx: list[int], pad_id: int) -> dict[str, Any]:
    import torch

    seqs = [examples[i][0] + examples[i][1] for i in idx]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, i in enumerate(idx):
        p, c = examples[i]
        ids[row, :len(p) + len(c)] = torch.tensor(p + c)
        labels[row, len(p):len(p) + len(c)] = torch.tensor(c)  # loss on the completion only
        mask[row, :len(p) + len(c)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _completion_loss(model: Any, batch: dict[str, Any]) -> Any:
    """Next-token loss on completion positions only, projecting only those hidden states to the vocab.

    Same value as ``model(..., labels=...).loss``, but skipping the LM head on prompt positions makes a
    warm-up step ~3x cheaper on CPU (the prompt is most of the sequence).
    """
    import torch

    hidden = model.model(input_ids=batch["input_ids"],
                         attention_mask=batch["attention_mask"]).last_hidden_state
    targets = batch["labels"][:, 1:]
    keep = targets != -100
    logits = model.lm_head(hidden[:, :-1][keep])
    return torch.nn.functional.cross_entropy(logits.float(), targets[keep])


def _warm_up(model: Any, examples: list, cfg: TinyPolicyConfig, pad_id: int) -> dict[str, Any]:
    import torch

    rng = random.Random(cfg.seed)
    steps_per_epoch = -(-len(examples) // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt,
                                              lambda s: min(1.0, (s + 1) / 20) * max(0.05, 1 - s / total))
    model.train()
    start, step, losses, stopped = time.perf_counter(), 0, [], False
    for _epoch in range(cfg.epochs):
        for idx in _batches(examples, cfg.batch_size, rng):
            loss = _completion_loss(model, _collate(examples, idx, pad_id))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            step += 1
            if cfg.max_seconds and time.perf_counter() - start > cfg.max_seconds:
                stopped = True
                break
        if stopped:
            logger.warning("tiny policy warm-up hit max_seconds=%s after %d steps", cfg.max_seconds, step)
            break
    model.eval()
    tail = losses[-max(1, steps_per_epoch // 4):]
    return {"steps": step, "planned_steps": total, "first_loss": losses[0] if losses else None,
            "final_loss": sum(tail) / len(tail) if tail else None, "stopped_early": stopped,
            "seconds": time.perf_counter() - start}


def build_tiny_policy(catalog: pd.DataFrame, out_dir: str | Path,
                      config: TinyPolicyConfig | None = None) -> Path:
    """Build the tiny default policy from ``catalog`` (columns ``title``, ``text``) into ``out_dir``.

    Writes safetensors weights, the tokenizer (a ``PreTrainedTokenizerFast``) and ``relsum_policy.json``
    (how it was built). The folder is assembled in a temporary sibling and moved into place, so a
    crashed build never leaves a half-written policy behind. ``out_dir`` must be absent, empty, or a
    previous tiny-policy build (which is replaced).
    """
    import torch

    cfg = config or TinyPolicyConfig()
    missing = {"title", "text"} - set(catalog.columns)
    if missing:
        raise ValueError(f"catalog lacks columns {sorted(missing)}")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (out / MARKER_FILE).exists():
        raise FileExistsError(f"{out} is not empty and is not a tiny policy build; refusing to replace it")
    t0 = time.perf_counter()
    threads_before = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _build(catalog, out, cfg, t0)
    finally:
        torch.set_num_threads(threads_before)


def _build(catalog: pd.DataFrame, out: Path, cfg: TinyPolicyConfig, t0: float) -> Path:
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    data = catalog[["title", "text"]].fillna("").astype(str)
    data = data[data["text"].str.strip() != ""]
    if cfg.max_products and len(data) > cfg.max_products:
        data = data.sample(n=cfg.max_products, random_state=cfg.seed)
    if data.empty:
        raise ValueError("catalog has no rows with non-empty text")
    corpus = [FRAME, INSTRUCTION] * 50 + [build_prompt(t, x) for t,
                                          x in zip(data["title"], data["text"], strict=True)]
    corpus += [" " + pseudo_summary(t, x) for t, x in zip(data["title"], data["text"], strict=True)]
    tokenizer = _train_tokenizer(corpus, cfg.vocab_size, cfg.max_positions)
    examples, empty = warm_up_examples(data, tokenizer, cfg)
    if not examples:
        raise ValueError("no product has a non-empty pseudo-summary; cannot warm up the tiny policy")
    torch.manual_seed(cfg.seed)
    mconf = MistralConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads, max_position_embeddings=cfg.max_positions,
        sliding_window=None, tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    model = MistralForCausalLM(mconf).float()
    warm = _warm_up(model, examples, cfg, tokenizer.pad_token_id)
    gen = model.generation_config
    gen.pad_token_id, gen.bos_token_id, gen.eos_token_id = (
        tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id)
    gen.do_sample, gen.max_new_tokens = False, cfg.max_summary_tokens
    info = {
        "kind": "relsum-tiny-policy", "seed": cfg.seed,
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
        "catalog_rows": int(len(catalog)), "products_used": int(len(data)), "warmup_examples": len(examples),
        "empty_pseudo_summaries": empty, "vocab_size": len(tokenizer),
        "parameters": sum(p.numel() for p in model.parameters()), "warmup": warm,
        "build_seconds": round(time.perf_counter() - t0, 2), "torch_threads": torch.get_num_threads(),
    }
    # the marker goes inside the staged folder, swapped in whole (an existing build is replaced)
    with staged_folder(out, None, "tiny policy build", lock=False, ours=is_model_folder) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / MARKER_FILE).write_text(json.dumps(info, indent=2, default=str), encoding="utf-8")
    logger.info("built tiny policy (%d params, %d warm-up steps, final loss %.3f) at %s in %.1fs",
                info["parameters"], warm["steps"], warm["final_loss"] or float("nan"), out,
                info["build_seconds"])
    return out
