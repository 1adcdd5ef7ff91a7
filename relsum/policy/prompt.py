"""The ReLSum summarization prompt (paper, "Model Training", step 1) and its safe filling.

Frame, with whitespace fixed once here::

    [DESCRIPTION]: {text} [TITLE]: {title}\\nProduct attributes appearing in [DESCRIPTION] but not in [TITLE]
    are:

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

Variants (:data:`VARIANTS`, chosen by ``policy.prompt``): ``paper`` is the frame above. An instruct model
(SmolLM2-135M-Instruct) given the paper's wording comments on the instruction instead of answering ("The
product description does not explicitly state ...", 7 of 10 products), so ``one_line`` puts a system line
("use only facts from the details") in front and asks for one line listing what the title lacks;
``one_line_started`` also starts the answer for the model. Every variant's seller text goes through
:func:`neutralise`, so the frame's own newlines are the only ones. Generation stops at the first line
break (:func:`stop_token_ids`), so training and serving see the same one-line text.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any

from relsum.policy.chat_render import render_chat

logger = logging.getLogger(__name__)

INSTRUCTION = "Product attributes appearing in [DESCRIPTION] but not in [TITLE] are:"
FRAME = "[DESCRIPTION]: {text} [TITLE]: {title}\n" + INSTRUCTION

SYSTEM_LINE = ("You write one short line of product facts for a search engine. Use only facts from the "
               "details; never add a fact that the details do not state.")
ONE_LINE_FRAME = ("Product title: {title}\nProduct details: {text}\nIn one line, list the "
                  "facts from the details "
                  "that the title does not mention (type, size, material, colour, compatibility, features), "
                  "separated by commas.")


@dataclasses.dataclass(frozen=True)
class PromptVariant:
    """A prompt wording: the frame (``{text}``, ``{title}``), an optional system line (chat templates
    only) and an optional start of the answer, after which the summary is what the model writes."""

    name: str
    frame: str
    system: str = ""
    answer_start: str = ""


VARIANTS: dict[str, PromptVariant] = {
    "paper": PromptVariant("paper", FRAME),
    "one_line": PromptVariant("one_line", ONE_LINE_FRAME, system=SYSTEM_LINE),
    "one_line_started": PromptVariant("one_line_started", ONE_LINE_FRAME, system=SYSTEM_LINE,
                                      answer_start="Facts not in the title:"),
}
#: What ``prompt: auto`` means for a tokenizer with a chat template (without one: ``paper``). Chosen on 40
#: train-split products (SmolLM2, greedy, bf16, ``benchmarks/bench_policy.py --select-prompts 40``): mean
#: reward -0.4271 against -0.4308 for ``paper`` (+0.0037, 95% CI [+0.0009, +0.0066]); ``one_line_started``
#: -0.4306, with 12 of 40 summaries empty (the model put a line break right after the started answer).
DEFAULT_CHAT_VARIANT = "one_line"


def resolve_variant(name: str | PromptVariant | None, templated: bool) -> PromptVariant:
    """The variant for ``name``; ``auto``/None = :data:`DEFAULT_CHAT_VARIANT` for chat models, else
    ``paper``."""
    if isinstance(name, PromptVariant):
        return name
    if name in (None, "auto"):
        return VARIANTS[DEFAULT_CHAT_VARIANT if templated else "paper"]
    if name not in VARIANTS:
        raise ValueError(f"unknown prompt variant {name!r}; known: auto, {', '.join(VARIANTS)}")
    return VARIANTS[name]


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


def build_prompt(title: Any, text: Any, variant: str | PromptVariant = "paper") -> str:
    """The prompt for one product; ``paper``: description (``text``) first, then title, then the ask."""
    frame = resolve_variant(variant, False).frame
    return frame.format(text=neutralise(text), title=neutralise(title))


def fit_text(tokenizer: Any, title: Any, text: Any, max_prompt_tokens: int) -> str:
    """``text`` cut (at a token boundary, from the end) so the whole prompt fits ``max_prompt_tokens``.

    Truncating the description rather than the prompt keeps both the frame start and the instruction
    line, which a left or right cut of the finished prompt would lose. One product of :func:`fit_texts`.
    """
    return fit_texts(tokenizer, [title], [text], max_prompt_tokens)[0]


def fit_texts(tokenizer: Any, titles: list[Any], texts: list[Any], max_prompt_tokens: int, *,
              variant: str | PromptVariant = "paper", use_chat_template: bool = False) -> list[str]:
    """:func:`fit_text` for many products at once: three batched tokenizer calls in all.

    Tokens rarely span more than ~10 characters, so each text is pre-cut at 12 characters per token of
    budget before tokenizing (bounds tokenizer time on huge texts). Batched because per-call tokenizer
    overhead otherwise costs as much as generating on a tiny model. The cap counts the whole string the
    model reads (``variant``'s frame, and with ``use_chat_template`` the chat wrapper and system line).
    """
    if len(titles) != len(texts):
        raise ValueError(f"titles and texts lengths differ: {len(titles)} != {len(texts)}")
    cleans = [neutralise(x) for x in texts]
    if max_prompt_tokens <= 0:
        return cleans
    live = [i for i, c in enumerate(cleans) if c]
    if not live:
        return cleans
    fixed = tokenizer([policy_text(tokenizer, build_prompt(titles[i], "", variant), use_chat_template,
                                   variant)
                       for i in live], add_special_tokens=not use_chat_template)["input_ids"]
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


def as_messages(prompt: str, system: str = "") -> list[dict[str, str]]:
    """The prompt as a one-turn conversation (what TRL and chat templates expect), after a system line if
    any."""
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]


def policy_text(tokenizer: Any, prompt: str, use_chat_template: bool,
                variant: str | PromptVariant | None = None) -> str:
    """The exact string fed to the model: the raw prompt, or the chat-templated turn(s), then the
    variant's start of the answer (``variant`` None: no system line, no answer start).

    The template is rendered under a budget (:mod:`relsum.policy.chat_render`): one that the sandbox
    refuses or that runs away is an :class:`~relsum.core.errors.InputError` naming its file.
    A templated string already contains the BOS token, so it must be tokenized with
    ``add_special_tokens=False`` (see :func:`relsum.policy.generate.generate_summaries`);
    :func:`trainer_text` is the form for tokenizers that add special tokens (TRL).
    """
    v = resolve_variant(variant, use_chat_template) if variant is not None else None
    start = v.answer_start if v else ""
    if not use_chat_template:
        return prompt + ("\n" + start if start else "")
    text = render_chat(tokenizer, as_messages(prompt, v.system if v else ""), add_generation_prompt=True)
    return text + start


def trainer_text(tokenizer: Any, text: str, use_chat_template: bool) -> str:
    """A :func:`policy_text` string for TRL, which tokenizes plain prompts with ``add_special_tokens=True``:
    a templated string loses its leading BOS when the tokenizer adds one itself (no double BOS), so
    training sees the same token ids as :func:`relsum.policy.generate.generate_summaries`."""
    if not use_chat_template:
        return text
    bos = getattr(tokenizer, "bos_token", None)
    if bos and text.startswith(bos):
        ids = tokenizer("x", add_special_tokens=True)["input_ids"]
        if ids and ids[0] == tokenizer.bos_token_id:
            return text[len(bos):]
    return text


def render_prompts(tokenizer: Any, titles: list[Any], texts: list[Any], *, max_prompt_tokens: int,
                   use_chat_template: bool, variant: str | PromptVariant | None = "auto") -> list[str]:
    """Each product's :func:`policy_text` under ``variant``, its text cut to ``max_prompt_tokens``."""
    v = resolve_variant(variant, use_chat_template)
    fitted = fit_texts(tokenizer, titles, texts, max_prompt_tokens, variant=v,
                       use_chat_template=use_chat_template)
    return [policy_text(tokenizer, build_prompt(t, x, v), use_chat_template, v)
            for t, x in zip(titles, fitted, strict=True)]


_STOP_IDS: dict[tuple[str, int, int | None], list[int]] = {}


def stop_token_ids(tokenizer: Any) -> list[int]:
    """EOS plus every token whose text contains a line break: generation ends at the first line, the
    served form (:func:`relsum.policy.generate.postprocess` cuts there too), so GRPO does not train on
    text after it. Cached per tokenizer (one batched decode of the vocabulary)."""
    key = (str(getattr(tokenizer, "name_or_path", "")), len(tokenizer), tokenizer.eos_token_id)
    if key not in _STOP_IDS:
        n = len(tokenizer)
        pieces = tokenizer.batch_decode([[i] for i in range(n)], skip_special_tokens=False,
                                        clean_up_tokenization_spaces=False)
        breaks = [i for i, p in enumerate(pieces) if "\n" in p or "\r" in p]
        eos = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
        _STOP_IDS[key] = eos + [i for i in breaks if i not in eos]
    return list(_STOP_IDS[key])
