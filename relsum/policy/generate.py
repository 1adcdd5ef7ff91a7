"""Batched summary generation with the policy (inference, evaluation, DPO pair sampling).

Prompts are sorted by length and batched with left padding so batches waste little compute and the
new tokens line up at the right edge; results come back in input order. Only the new tokens are
decoded, and :func:`relsum.policy.served.served_summary` is applied here, in the reward and in the
catalog job, so training optimises, evaluation measures and serving shows exactly one string.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from relsum.policy.prompt import render_prompts, resolve_chat_template, stop_token_ids
from relsum.policy.served import served_summary

logger = logging.getLogger(__name__)

PROGRESS_MIN_BATCHES = 8


def postprocess(text: str | None) -> str:
    """:func:`~relsum.policy.served.served_summary` under its older name (kept for callers and
    benchmarks)."""
    return served_summary(text)


def _is_empty(text: Any) -> bool:
    return text is None or (isinstance(text, float) and text != text) or not str(text).strip()


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int | None):
    """Token-id lists as left-padded ``input_ids`` and ``attention_mask`` int64 tensors."""
    import numpy as np
    import torch

    width = max(len(seq) for seq in sequences)
    ids = np.full((len(sequences), width), 0 if pad_id is None else pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq):] = seq
            mask[row, width - len(seq):] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def mask_positions(attention_mask: Any) -> Any:
    """Token positions of left-padded rows, numbered as ``generate`` numbers them: ``cumsum(mask) - 1``,
    0 on padding."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def shared_prefill(model: Any, input_ids: Any, attention_mask: Any, copies: int) -> tuple[Any, Any, Any]:
    """Run the prompts once and hand ``copies`` of each to generation: ``(input_ids, attention_mask, cache)``
    repeated row-wise, with the cache holding every prompt token but the last.

    ``generate(num_return_sequences=k)`` repeats each prompt k times *before* the forward pass, so the prompt
    (~280 tokens here, against ≤48 new ones) is computed k times; this computes it once. Positions follow the
    left padding (:func:`mask_positions`), as ``generate`` numbers them, so the continuation sees the
    same positions and mask either way.
    """
    import torch
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    head, mask = input_ids[:, :-1], attention_mask[:, :-1]
    with torch.no_grad():
        model(input_ids=head, attention_mask=mask, position_ids=mask_positions(mask), past_key_values=cache,
              use_cache=True, logits_to_keep=1)
    cache.batch_repeat_interleave(copies)
    return input_ids.repeat_interleave(copies, dim=0), attention_mask.repeat_interleave(copies, dim=0), cache


def generate_summaries(model: Any, tokenizer: Any, titles: Sequence[Any], texts: Sequence[Any], *,
                       max_new_tokens: int = 48, batch_size: int = 16, do_sample: bool = False,
                       temperature: float = 0.9, num_return_sequences: int = 1, seed: int = 0,
                       show_progress: bool | None = None, use_chat_template: bool | None = None,
                       max_prompt_tokens: int = 384, prompt: str = "auto",
                       share_prefill: bool = True) -> list[str] | list[list[str]]:
    """One summary per (title, text), or a list of ``num_return_sequences`` when that is > 1.

    An empty ``text`` yields "" (or a list of "") without running the model. Greedy decoding gives
    the same result batched or one by one (left padding + attention mask). ``prompt`` names the prompt
    variant (:data:`relsum.policy.prompt.VARIANTS`; auto = one_line with a chat template, else paper);
    generation stops at the first line break (:func:`relsum.policy.prompt.stop_token_ids`). With several
    sequences per prompt, ``share_prefill`` computes each prompt once (:func:`shared_prefill`); False is
    ``generate``'s own way (the benchmark's baseline).
    """
    import torch

    titles, texts = list(titles), list(texts)
    if len(titles) != len(texts):
        raise ValueError(f"titles and texts lengths differ: {len(titles)} != {len(texts)}")
    if batch_size < 1 or num_return_sequences < 1 or max_new_tokens < 1:
        raise ValueError("batch_size, num_return_sequences and max_new_tokens must be >= 1")
    if do_sample and temperature <= 0:
        raise ValueError("temperature must be > 0 when sampling")
    templated = resolve_chat_template(tokenizer, use_chat_template)
    empty: list[str] = [""] * num_return_sequences
    results: list[Any] = [list(empty) for _ in titles]
    todo = [i for i, t in enumerate(texts) if not _is_empty(t)]
    if not todo:
        return [r[0] for r in results] if num_return_sequences == 1 else results
    strings = render_prompts(tokenizer, [titles[i] for i in todo], [texts[i] for i in todo],
                             max_prompt_tokens=max_prompt_tokens, use_chat_template=templated, variant=prompt)
    # One tokenizer call for every prompt; batches are then padded here (numpy), which is what
    # tokenizer(..., padding=True) does, minus its per-batch Python overhead.
    ids = dict(zip(todo, tokenizer(strings, add_special_tokens=not templated)["input_ids"], strict=True))
    order = sorted(todo, key=lambda i: -len(ids[i]))
    batches = [order[k:k + batch_size] for k in range(0, len(order), batch_size)]
    gen_kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens, "num_return_sequences": num_return_sequences,
        "pad_token_id": tokenizer.pad_token_id, "eos_token_id": stop_token_ids(tokenizer),
        "do_sample": do_sample,
    }
    if do_sample:
        gen_kwargs.update(temperature=temperature, top_p=1.0, top_k=0)
    else:
        gen_kwargs.update(temperature=None, top_p=None, top_k=None)
    if show_progress is None:
        show_progress = len(batches) >= PROGRESS_MIN_BATCHES
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    try:
        iterator: Any = batches
        if show_progress:
            from tqdm.auto import tqdm

            iterator = tqdm(batches, desc="summarize", unit="batch")
        with torch.inference_mode():
            for batch in iterator:
                input_ids, attention_mask = left_pad([ids[i] for i in batch], tokenizer.pad_token_id)
                input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
                if num_return_sequences > 1 and share_prefill and input_ids.shape[1] > 1:
                    input_ids, attention_mask, cache = shared_prefill(model, input_ids, attention_mask,
                                                                      num_return_sequences)
                    out = model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                         past_key_values=cache, **{**gen_kwargs, "num_return_sequences": 1})
                else:
                    out = model.generate(input_ids=input_ids, attention_mask=attention_mask, **gen_kwargs)
                decoded = tokenizer.batch_decode(out[:, input_ids.shape[1]:], skip_special_tokens=True)
                for j, i in enumerate(batch):
                    chunk = decoded[j * num_return_sequences:(j + 1) * num_return_sequences]
                    results[i] = [served_summary(s, title=titles[i]) for s in chunk]
    finally:
        if was_training:
            model.train()
    logger.debug("generated %d x %d summaries in %d batches", len(todo), num_return_sequences, len(batches))
    return [r[0] for r in results] if num_return_sequences == 1 else results
