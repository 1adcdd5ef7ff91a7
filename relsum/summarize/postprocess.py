"""Cleaning a generated summary before it is stored and shown to the ranker.

The policy's raw completion is untrusted model text: it can echo the prompt frame, invent markup or
URLs, or run on. :func:`clean_summary` turns it into one line of plain words:

1. a leading echo of the prompt frame is cut: if the completion starts with ``[DESCRIPTION]`` /
   ``[TITLE]`` or with the instruction line, everything up to the end of the instruction
   (``... are:``) is dropped, and any bare leading ``[DESCRIPTION]:`` / ``[TITLE]:`` markers go;
2. a completion that starts a *new* frame later (``... [DESCRIPTION]: ...``) is cut there;
3. HTML/XML tags, entities, control and invisible characters are removed
   (:func:`relsum.data.sanitize.clean_text`), as are Markdown emphasis/heading/code marks and U+FFFD
   (a multi-byte character cut in half by ``max_new_tokens``);
4. URLs (``http(s)://``, ``www.``) are removed;
5. whitespace runs become one space, leading separators (``:``, ``-``, ``,``) are stripped;
6. the result is capped at ``max_words`` whitespace tokens (so the cap falls on a word boundary).

The cap is in whitespace words, not model tokens, so it means the same for every tokenizer.
Callers do not use :func:`clean_summary` on completions directly:
:func:`relsum.summarize.served.served_summary`
(echo cut, first line, this cleaning, repeated to a fixed point) is the one served form.
"""

from __future__ import annotations

import logging
import re

from relsum.data.sanitize import clean_text
from relsum.training.prompt import INSTRUCTION

logger = logging.getLogger(__name__)

_URL = re.compile(r"(?:https?|ftp)://\S+|\bwww\.[^\s/]+\.\S*", re.IGNORECASE)
_MARKDOWN = re.compile(r"(\*\*|__|`+|~~|^#{1,6}\s+|(?<=\s)#{1,6}\s+)")
_MARKER = re.compile(r"\[\s*(description|title)\s*\]\s*:?", re.IGNORECASE)
_INSTRUCTION = re.compile(r"\s+".join(re.escape(w) for w in INSTRUCTION.split()), re.IGNORECASE)
_LEAD = re.compile(r"^[\s:;,.\-\u2013\u2014|]+")
_SPACES = re.compile(r"\s+")


def strip_prompt_echo(text: str) -> str:
    """``text`` without a leading copy of the prompt frame, and cut where a new frame begins."""
    stripped = text.lstrip()
    head = stripped[:200]
    if _MARKER.match(head) or _INSTRUCTION.match(head):
        found = _INSTRUCTION.search(stripped)
        stripped = stripped[found.end():] if found else _MARKER.sub(" ", stripped, count=2)
    later = _MARKER.search(stripped)
    if later:
        stripped = stripped[:later.start()]
    return stripped


def clean_summary(raw: str | None, max_words: int = 64) -> str:
    """A stored summary from a raw completion (see module docstring); None -> ``""``."""
    if not raw:
        return ""
    text = strip_prompt_echo(str(raw))
    text = clean_text(text)  # markup, entities, control/format characters, one line
    text = _URL.sub(" ", text).replace("\ufffd", "")  # U+FFFD: a multi-byte char cut by max_new_tokens
    text = _MARKDOWN.sub(" ", text)
    text = _LEAD.sub("", _SPACES.sub(" ", text)).strip()
    words = text.split()
    if max_words and len(words) > max_words:
        words = words[:max_words]
    return " ".join(words)
