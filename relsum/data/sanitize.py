"""Cleaning untrusted seller text before any model reads it.

Descriptions and attributes come from sellers and catalog feeds: they carry HTML, scripts, entities,
invisible characters (zero-width, bidi overrides that can reorder what a reader sees) and unbounded
length. :func:`clean_text` turns such text into one line of plain, NFKC-normalised words:

1. ``<script>``/``<style>`` blocks (with their content) and HTML comments are removed;
2. tags (``<b>``, ``</p>``, ``<br/>``...) become a space; a ``<`` not followed by a letter or ``/``
   (``size <5 mm``) is text and is kept;
3. HTML entities are unescaped (``&amp;`` -> ``&``), and tags revealed by unescaping are removed too;
4. Unicode NFKC normalisation (full-width letters, ligatures, non-breaking spaces);
5. control, format (zero-width, bidi, BOM, soft hyphen) and surrogate characters are removed;
6. whitespace runs become one space;
7. the text is capped at ``max_tokens`` tokens, where a token is a whitespace-separated word, so the
   cap always falls on a word boundary.

Markdown-ish noise (``**``, ``#``) and URLs are left as they are. :func:`content_hash` fingerprints the
cleaned fields so that later jobs can recompute only what changed.

Cleaning never rewrites what a seller *says*: text that talks to the model ("ignore previous
instructions", chat-template markup such as ``<|im_start|>``) is kept verbatim, because deleting
words would change the product text the reward was measured on and would let a pattern decide what a
product is. :func:`find_injections` only *flags* such text (run on the cleaned text, so zero-width or
full-width tricks are already undone) so that ``relsum validate`` can report how much of it reaches the
policy's prompt. The patterns aim at instructions addressed to a model, not at marketing claims; they
are a tripwire for a human to look at, not a security boundary.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import math
import re
import sys
import unicodedata
from typing import Any

logger = logging.getLogger(__name__)

_BLOCKS = re.compile(r"<(script|style)\b[^>]*>.*?(</\1\s*>|$)", re.IGNORECASE | re.DOTALL)
_COMMENTS = re.compile(r"<!--.*?(-->|$)", re.DOTALL)
_TAG = re.compile(r"</?[A-Za-z][^<>]*>|<![A-Za-z][^<>]*>")
_DROP_CATEGORIES = {"Cc", "Cf", "Cs"}
_UNDECODABLE = re.compile("[\ud800-\udfff\ufffd]")
_CONTROL_SPACES = {ord(c): " " for c in "\t\n\r\x0b\x0c\x85"}
_ASCII_CONTROLS = dict.fromkeys([*range(32), 127])
ATTRIBUTE_SEPARATOR = " | "
_QUALIFIER = r"(?:previous|prior|above|earlier|preceding|original|system|all|any|your)"
INJECTION_PATTERNS: dict[str, re.Pattern[str]] = {name: re.compile(rx, re.IGNORECASE) for name, rx in {
    "ignore instructions": (
        r"\b(?:ignore|disregard|forget|override|bypass)\s+(?:(?:all|any|the|of|your|these|those|my)\s+){0,3}"
        + _QUALIFIER + r"\s+(?:\w+\s+)?(?:instructions?|prompts?|directions|rules|guidelines|context)\b"),
    "role change": (
        r"\b(?:you are now|from now on,? you are|pretend (?:to be|you are)|act as)\s+(?:an?\s+|the\s+|my\s+)?"
        r"(?:ai|assistant|chatbot|bot|language model|llm|system|dan|developer|admin)\b"),
    "system prompt": r"\b(?:system prompt|system message|developer mode|jailbreak|prompt injection)\b",
    "chat markup": r"<\|[a-z_]+\|>|\[/?inst\]|<</?sys>>|#{2,}\s*(?:instruction|system|response)s?\b",
    "summary directive": (
        r"\b(?:summar(?:y|ies)|summari[sz]er|summari[sz]e)\b[^.|]{0,40}\b(?:must|should|always|only)\s+"
        r"(?:say|mention|state|include|contain|call|describe)\b|\b(?:when|while) summari[sz]ing\b"
        r"|\b(?:do not|don't|never) summari[sz]e\b"),
}.items()}


#: Words every match of a pattern contains, compared with ASCII text lowercased: a pattern runs only on text
#: holding one of them (ASCII text only: IGNORECASE also folds a few non-ASCII letters, such as the dotless
#: i, onto ASCII ones, so other text always runs every pattern). About 10x cheaper on catalog text.
INJECTION_HINTS: dict[str, tuple[str, ...]] = {
    "ignore instructions": ("ignore", "disregard", "forget", "override", "bypass"),
    "role change": ("you are now", "from now on", "pretend ", "act as"),
    "system prompt": ("system prompt", "system message", "developer mode", "jailbreak", "prompt injection"),
    "chat markup": ("<|", "[inst]", "[/inst]", "<<", "##"),
    "summary directive": ("summar",),
}


class InvisibleTable(dict):
    """A ``str.translate`` table that deletes control, format and surrogate characters (``Cc``/``Cf``/``Cs``).

    Filled lazily, one entry per code point first seen, so cleaning costs nothing up front (a regex class
    of all such code points took ~0.3 s to build, most of ``relsum validate``'s cleaning time on the
    sample); ``__missing__`` answers ``None`` (delete) or the code point itself (keep).
    """

    def __missing__(self, point: int) -> int | None:
        kept = None if unicodedata.category(chr(point)) in _DROP_CATEGORIES else point
        self[point] = kept
        return kept


_INVISIBLE = InvisibleTable()


def is_missing(value: Any) -> bool:
    """None, NaN and pandas' NA/NaT count as missing; empty strings do not (they are empty text)."""
    if value is None:
        return True
    if isinstance(value, str):  # the common case, first
        return False
    if isinstance(value, float):
        return math.isnan(value)
    # pd.NA and pd.NaT exist only once pandas is loaded; looking it up (not importing it) keeps this module,
    # and the stage configs that normalise ids with it, free of pandas.
    pd = sys.modules.get("pandas")
    return pd is not None and (value is pd.NA or value is pd.NaT)


def _strip_markup(text: str) -> str:
    text = _BLOCKS.sub(" ", text)
    text = _COMMENTS.sub(" ", text)
    return _TAG.sub(" ", text)


def clean_text(raw: Any, max_tokens: int | None = None) -> str:
    """Plain, normalised, single-line text from untrusted ``raw`` (see module docstring); missing ->
    ``""``."""
    if is_missing(raw):
        return ""
    text = raw if isinstance(raw, str) else str(raw)
    text = _strip_markup(text)
    text = _strip_markup(html.unescape(text))
    text = unicodedata.normalize("NFKC", text)
    if not text.isprintable():  # printable text has no control, format or surrogate character to remove
        text = text.translate(_CONTROL_SPACES)
        text = text.translate(_ASCII_CONTROLS if text.isascii() else _INVISIBLE)
    tokens = text.split()
    if max_tokens is not None and len(tokens) > max_tokens:
        tokens = tokens[:max_tokens]
    return " ".join(tokens)


def render_attributes(value: Any) -> str:
    """Attribute text as ``name: value | name: value``; dicts and JSON-object strings are rendered.

    A string that is not a JSON object is taken as already-rendered text. Lists are joined with the same
    separator. Missing values give ``""``.
    """
    if is_missing(value):
        return ""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("{"):
            try:
                parsed = json.loads(stripped)
            except json.JSONDecodeError:
                return value
            if isinstance(parsed, dict):
                return render_attributes(parsed)
        return value
    if isinstance(value, dict):
        return ATTRIBUTE_SEPARATOR.join(f"{k}: {v}" for k, v in value.items() if not is_missing(v))
    if hasattr(value, "tolist"):  # numpy arrays from Parquet lists
        value = value.tolist()
    if isinstance(value, list | tuple):
        return ATTRIBUTE_SEPARATOR.join(render_attributes(v) for v in value if not is_missing(v))
    return str(value)


def content_hash(*parts: Any) -> str:
    """sha256 hex of the parts joined with NUL; missing parts hash as empty strings."""
    joined = "\x00".join("" if is_missing(p) else str(p) for p in parts)
    return hashlib.sha256(joined.encode("utf-8", errors="surrogatepass")).hexdigest()


def find_injections(text: Any) -> list[tuple[str, str]]:
    """(pattern name, matched words) of every :data:`INJECTION_PATTERNS` hit in ``text``; missing -> []."""
    if is_missing(text) or not isinstance(text, str):
        return []
    low = text.lower() if text.isascii() else None
    return [(name, m.group(0)) for name, rx in INJECTION_PATTERNS.items()
            if (low is None or any(hint in low for hint in INJECTION_HINTS[name])) and (m := rx.search(text))]


def has_undecodable(value: Any) -> bool:
    """True for text holding U+FFFD (bytes replaced at read time) or lone surrogates (surrogateescape)."""
    if isinstance(value, str):
        return _UNDECODABLE.search(value) is not None
    if isinstance(value, dict):
        parts = [part for item in value.items() for part in item]
    elif isinstance(value, list | tuple):
        parts = list(value)
    else:
        return False
    texts = [part for part in parts if isinstance(part, str)]
    if texts and _UNDECODABLE.search("\n".join(texts)):  # one search for all: the pattern is one character
        return True
    return any(has_undecodable(part) for part in parts if not isinstance(part, str))
