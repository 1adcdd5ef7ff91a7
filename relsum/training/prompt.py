"""The ReLSum summarization prompt (paper, "Model Training", step 1) and its safe filling.

Frame, with whitespace fixed once here::

    [DESCRIPTION]: {text} [TITLE]: {title}\\nProduct attributes appearing in [DESCRIPTION] but not in [TITLE] are:

One space after each ``]:``, one space before ``[TITLE]``, exactly one newline before the instruction
line and NO trailing space after ``are:``: the policy's completion starts with its own leading space
(byte-level BPE and SentencePiece both fold the space into the first word), so a trailing space in
the prompt would force an unnatural token split.

The policy never sees the query: the query is part of the environment (reward), not the input.

Title and description are untrusted seller text and are only ever placed inside the frame after
:func:`neutralise`, which (a) folds all line breaks / control characters into spaces (the only
newline in a prompt is the frame's own), (b) turns the bracketed markers ``[DESCRIPTION]`` and
``[TITLE]`` (any case, any inner spacing) into unbracketed words, and (c) rewrites the phrase
``product attributes appearing`` to ``product attributes found``, so seller text can neither close
the frame early nor plant a fake instruction line.
"""

from __future__ import annotations

import logging
import re
from typing import Any

logger = logging.getLogger(__name__)

INSTRUCTION = "Product attributes appearing in [DESCRIPTION] but not in [TITLE] are:"
FRAME = "[DESCRIPTION]: {text} [TITLE]: {title}\n" + INSTRUCTION

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")
_MARKER = re.compile(r"\[\s*(description|title)\s*\]", re.IGNORECASE)
_PHRASE = re.compile(r"(product\s+attributes\s+)appearing", re.IGNORECASE)
_SPACES = re.compile(r"\s+")


def neutralise(value: Any) -> str:
    """Seller text made safe to place inside the frame (see module docstring); None -> ""."""
    if value is None:
        return ""
    if not isinstance(value, str):
        if value != value:  # NaN from pandas
            return ""
        value = str(value)
    text = _CONTROL.sub(" ", value)
    text = _MARKER.sub(lambda m: m.group(1), text)
    text = _PHRASE.sub(lambda m: m.group(1) + "found", text)
    return _SPACES.sub(" ", text).strip()


def build_prompt(title: Any, text: Any) -> str:
    """The paper's prompt for one product: description (``text``) first, then title, then the ask."""
    return FRAME.format(text=neutralise(text), title=neutralise(title))


def fit_text(tokenizer: Any, title: Any, text: Any, max_prompt_tokens: int) -> str:
    """``text`` cut (at a token boundary, from the end) so the whole prompt fits ``max_prompt_tokens``.

    Truncating the description rather than the prompt keeps both the frame start and the instruction
    line, which a left or right cut of the finished prompt would lose. One product of :func:`fit_texts`.
    """
    return fit_texts(tokenizer, [title], [text], max_prompt_tokens)[0]


def fit_texts(tokenizer: Any, titles: list[Any], texts: list[Any], max_prompt_tokens: int) -> list[str]:
    """:func:`fit_text` for many products at once: three batched tokenizer calls in all.

    Tokens rarely span more than ~10 characters, so each text is pre-cut at 12 characters per token of
    budget before tokenizing (bounds tokenizer time on huge texts). Batched because per-call tokenizer
    overhead otherwise costs as much as generating on a tiny model.
    """
    if len(titles) != len(texts):
        raise ValueError(f"titles and texts lengths differ: {len(titles)} != {len(texts)}")
    cleans = [neutralise(x) for x in texts]
    if max_prompt_tokens <= 0:
        return cleans
    live = [i for i, c in enumerate(cleans) if c]
    if not live:
        return cleans
    fixed = tokenizer([build_prompt(titles[i], "") for i in live], add_special_tokens=True)["input_ids"]
    budgets = {i: max_prompt_tokens - len(f) for i, f in zip(live, fixed, strict=True)}
    out = list(cleans)
    for i in live:
        if budgets[i] <= 0:
            out[i] = ""
    live = [i for i in live if budgets[i] > 0]
    if not live:
        return out
    ids = tokenizer([cleans[i][: budgets[i] * 12] for i in live], add_special_tokens=False,
                    verbose=False)["input_ids"]
    cut = [(i, seq[: budgets[i]]) for i, seq in zip(live, ids, strict=True)
           if len(seq) > budgets[i] or len(cleans[i]) > budgets[i] * 12]
    if cut:
        decoded = tokenizer.batch_decode([seq for _, seq in cut], skip_special_tokens=True)
        for (i, _), text in zip(cut, decoded, strict=True):
            out[i] = text.strip()
    return out


def resolve_chat_template(tokenizer: Any, use_chat_template: bool | None) -> bool:
    """None = use the tokenizer's chat template when it has one; True without a template is an error."""
    has = bool(getattr(tokenizer, "chat_template", None))
    if use_chat_template is None:
        return has
    if use_chat_template and not has:
        raise ValueError("use_chat_template=True but the tokenizer has no chat template")
    return bool(use_chat_template)


def as_messages(prompt: str) -> list[dict[str, str]]:
    """The prompt as a one-turn conversation (what TRL and chat templates expect)."""
    return [{"role": "user", "content": prompt}]


def policy_text(tokenizer: Any, prompt: str, use_chat_template: bool) -> str:
    """The exact string fed to the model: the raw prompt, or the chat-templated user turn.

    A templated string already contains the BOS token, so it must be tokenized with
    ``add_special_tokens=False`` (see :func:`relsum.training.generate.generate_summaries`).
    """
    if not use_chat_template:
        return prompt
    return tokenizer.apply_chat_template(as_messages(prompt), tokenize=False, add_generation_prompt=True)
