"""The one served summary: what a raw completion becomes before anyone stores, scores or shows it.

Why one function: the GRPO reward, the held-out comparison, the demo, the retrain DAG's evaluation,
``ablate``, the deployment gate, the catalog job and the interleaving export all judge or serve "the
summary". When each applied its own cleaning, the champion gate and the offline table judged strings
that differed from the ones served. Every path now goes through :func:`served_summary` (the
generators apply it to the decoded new tokens; the catalog job applies it again, which changes
nothing because it is idempotent), so training optimises, evaluation measures and serving shows one
string.

Steps, on the completion's text (the new tokens only, special tokens skipped):

1. a leading echo of the prompt frame is cut (:func:`relsum.summarize.postprocess.strip_prompt_echo`),
   and so is a new frame started later;
2. only the first non-empty line is kept: the prompt asks for one line of attributes, and what a
   policy writes after its first line break is a new turn, not part of the answer;
3. :func:`relsum.summarize.postprocess.clean_summary`: markup, entities, URLs, Markdown marks, control
   and invisible characters go, whitespace collapses, leading separators go, and the text is capped
   at ``max_words`` whitespace words.

Cleaning can expose a frame marker (``&#91;TITLE&#93;`` decodes to ``[TITLE]``), so the steps repeat
until the string no longer changes (at most :data:`MAX_PASSES` times): then
``served_summary(served_summary(x)) == served_summary(x)`` and re-applying it downstream is free.
"""

from __future__ import annotations

import logging

from relsum.summarize.postprocess import clean_summary, strip_prompt_echo

logger = logging.getLogger(__name__)

SERVED_MAX_WORDS = 64
MAX_PASSES = 4


def first_line(text: str) -> str:
    """The first non-empty line of ``text`` (``\\n``, ``\\r``, U+2028/U+2029 and U+0085 break lines)."""
    for line in text.replace("\r\n", "\n").translate({0x0D: 0x0A, 0x2028: 0x0A, 0x2029: 0x0A,
                                                      0x85: 0x0A}).split("\n"):
        if line.strip():
            return line
    return ""


def _one_pass(text: str, max_words: int) -> str:
    return clean_summary(first_line(strip_prompt_echo(text)), max_words=max_words)


def served_summary(raw: str | None, max_words: int = SERVED_MAX_WORDS) -> str:
    """The stored and served form of a generated completion (steps in the module docstring); None -> ``""``.

    ``max_words`` = 0 means no word cap. Every caller that does not store summaries under its own
    configured cap uses the default, so the reward, the evaluation and the catalog agree.
    """
    if raw is None or (isinstance(raw, float) and raw != raw):
        return ""
    text = str(raw)
    for _ in range(MAX_PASSES):
        cleaned = _one_pass(text, max_words)
        if cleaned == text:
            break
        text = cleaned
    return text
