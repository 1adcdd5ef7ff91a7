"""The one served summary: what a raw completion becomes before anyone stores, scores or shows it.

Why one function: the GRPO reward, the held-out comparison, the demo, the retrain DAG's evaluation,
``ablate``, the deployment gate, the catalog job and the interleaving export all judge or serve "the
summary". When each applied its own cleaning, the champion gate and the offline table judged strings
that differed from the ones served. Every path now goes through :func:`served_summary` (the
generators apply it to the decoded new tokens; the catalog job applies it again, which changes
nothing because it is idempotent), so training optimises, evaluation measures and serving shows one
string. The reward scores this string, so whatever it strips earns the policy nothing.

Steps, on the completion's text (the new tokens only, special tokens skipped):

1. a leading echo of the prompt frame, or of any prompt variant's instruction or system line, is cut
   (:func:`relsum.policy.postprocess.strip_prompt_echo`), and so is a new frame started later;
2. only the first non-empty line is kept: the prompt asks for one line of attributes, and what a
   policy writes after its first line break is a new turn, not part of the answer;
3. :func:`relsum.policy.postprocess.clean_summary`: markup, entities, URLs, Markdown marks, control
   and invisible characters go, whitespace collapses, leading separators go;
4. tokens the ranker would spend on nothing go (issue 22: half of a demo adapter's summaries opened with
   ``Product details:``): list numbering and bullets, boilerplate labels (``Product details:``,
   ``Product title:``, ``Summary:``, ``Key facts:`` ...), a leading restatement of the ``title`` (when the
   caller passes it) and a segment that repeats the one before it;
5. the text is capped at ``max_words`` whitespace words (after step 4, so the cap keeps facts).

Cleaning can expose a frame marker (``&#91;TITLE&#93;`` decodes to ``[TITLE]``) and removing a label can
expose a title, so the steps repeat until the string no longer changes (at most :data:`MAX_PASSES` times):
then ``served_summary(served_summary(x)) == served_summary(x)`` and re-applying it downstream is free.

:func:`summary_defects` counts the same patterns (one pure function for the catalog manifest, the demo
and the evaluation report), on raw completions or on served text, where every count must be 0.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from relsum.policy.postprocess import (
    clean_summary,
    drop_repeated_segments,
    has_prompt_echo,
    starts_with_list_mark,
    strip_labels,
    strip_numbering,
    strip_prompt_echo,
    strip_title_restatement,
)

logger = logging.getLogger(__name__)

SERVED_MAX_WORDS = 64
MAX_PASSES = 6
#: Version of the served form; part of the catalog job's content key, so a change re-serves old outputs.
#: 2: numbering, boilerplate labels, title restatement, repeated segments, every variant's echo (issue 22).
SERVED_VERSION = 2
#: What :func:`summary_defects` counts (plus ``n``, the number of texts).
DEFECT_KINDS = ("prompt_echo", "boilerplate_label", "title_restatement", "numbering", "repeated_segment",
                "empty")

_RAW_LOG: contextvars.ContextVar[dict[str, list[str]] | None] = contextvars.ContextVar("relsum_raw_log",
                                                                                 default=None)


def first_line(text: str) -> str:
    """The first non-empty line of ``text`` (``\\n``, ``\\r``, U+2028/U+2029 and U+0085 break lines)."""
    for line in text.replace("\r\n", "\n").translate({0x0D: 0x0A, 0x2028: 0x0A, 0x2029: 0x0A,
                                                      0x85: 0x0A}).split("\n"):
        if line.strip():
            return line
    return ""


def _plain(text: str) -> str:
    """Steps 1-3: the one line a completion would be served as without the step-4 clean-up."""
    return clean_summary(first_line(strip_prompt_echo(text)), max_words=0)


def _defect_steps(text: str, title: str | None) -> dict[str, str]:
    """Step 4, one step at a time: each defect kind -> the text after its step (in serving order)."""
    after = {"numbering": strip_numbering(text)}
    after["boilerplate_label"] = strip_labels(after["numbering"])
    after["title_restatement"] = strip_title_restatement(after["boilerplate_label"], title)
    after["repeated_segment"] = drop_repeated_segments(after["title_restatement"])
    return after


def _one_pass(text: str, max_words: int, title: str | None) -> str:
    words = _defect_steps(_plain(text), title)["repeated_segment"].split()
    return " ".join(words[:max_words] if max_words else words)


def served_summary(raw: str | None, max_words: int = SERVED_MAX_WORDS, title: Any = None) -> str:
    """The stored and served form of a generated completion (steps in the module docstring); None -> ``""``.

    ``max_words`` = 0 means no word cap. Every caller that does not store summaries under its own
    configured cap uses the default, so the reward, the evaluation and the catalog agree. ``title``: the
    product's title, so a summary that restates it is cut (without it that step is skipped).
    """
    if raw is None or (isinstance(raw, float) and raw != raw):
        return ""
    text = original = str(raw)
    if title is not None and not isinstance(title, str):  # NaN (pandas) is no title
        title = None if isinstance(title, float) and title != title else str(title)
    for _ in range(MAX_PASSES):
        cleaned = _one_pass(text, max_words, title)
        if cleaned == text:
            break
        text = cleaned
    log = _RAW_LOG.get()
    if log is not None and text != original:
        log.setdefault(text, []).append(original)
    return text


def summary_defects(texts: Iterable[Any], titles: Sequence[Any] | None = None) -> dict[str, int]:
    """How many of ``texts`` show each pattern that wastes the ranker's tokens (:data:`DEFECT_KINDS`), plus
    ``n``. Pure: the same counts for the same inputs, whoever calls it.

    Raw completions (what would be served without clean-up) are counted on their first line after the
    frame and markup cleaning (steps 1-3), each kind being "its clean-up step would change the text";
    ``prompt_echo`` is looked for in the whole completion. On :func:`served_summary` output every count
    but ``empty`` is 0 (``title_restatement`` only if it was served with the same titles). ``titles``
    (aligned with ``texts``; None: ``title_restatement`` is not counted) are the products' titles.
    """
    texts = ["" if t is None or (isinstance(t, float) and t != t) else str(t) for t in texts]
    if titles is not None and len(titles) != len(texts):
        raise ValueError(f"texts and titles lengths differ: {len(texts)} != {len(titles)}")
    counts = dict.fromkeys(DEFECT_KINDS, 0) | {"n": len(texts)}
    for i, raw in enumerate(texts):
        title = None if titles is None else titles[i]
        title = None if title is None or (isinstance(title, float) and title != title) else str(title)
        text = _plain(raw)
        counts["prompt_echo"] += int(has_prompt_echo(raw))
        counts["empty"] += int(text == "")
        line = first_line(strip_prompt_echo(raw)).strip()  # a leading "- " is gone after markup cleaning
        counts["numbering"] += int(starts_with_list_mark(line) or strip_numbering(text) != text)
        prev = strip_numbering(text)
        for kind, after in list(_defect_steps(text, title).items())[1:]:
            counts[kind] += int(after != prev)
            prev = after
    return counts


def active_raw_log() -> dict[str, list[str]] | None:
    """The log of the innermost open :func:`raw_log` block in this context, or None outside one."""
    return _RAW_LOG.get()


@contextlib.contextmanager
def raw_log() -> Iterator[dict[str, list[str]]]:
    """Within the block, remember what each string was before :func:`served_summary` changed it (served
    text -> the raw texts it came from, in order): the generators serve as they decode, so this is how a
    caller that only gets served summaries (the catalog job, the demo) counts defects on the raw
    completions. Same thread only (a context variable); Ray workers' calls are not seen."""
    log: dict[str, list[str]] = {}
    token = _RAW_LOG.set(log)
    try:
        yield log
    finally:
        _RAW_LOG.reset(token)


def raw_of(served: Iterable[Any], log: dict[str, list[str]]) -> list[str]:
    """The raw completion behind each served string, from a :func:`raw_log`: each served occurrence takes
    the next raw text logged for it; a string serving did not change is its own raw text; chains (a
    second, shorter word cap applied to served text) are followed."""
    left = {k: list(v) for k, v in log.items()}
    out = []
    for text in served:
        text = "" if text is None or (isinstance(text, float) and text != text) else str(text)
        for _ in range(MAX_PASSES):
            if not left.get(text):
                break
            text = left[text].pop(0)
        out.append(text)
    return out


def defect_counts(served: Sequence[Any], titles: Sequence[Any] | None,
                  log: dict[str, list[str]] | None = None) -> dict[str, dict[str, int]]:
    """``{"raw": ..., "served": ...}`` :func:`summary_defects` of served summaries and, through a
    :func:`raw_log` (None: served counts only), of the raw completions behind them: what the catalog
    manifest, the demo and the evaluation report carry, so a regression in either shows."""
    out = {"served": summary_defects(served, titles)}
    if log is not None:
        out = {"raw": summary_defects(raw_of(served, log), titles), **out}
    return out
