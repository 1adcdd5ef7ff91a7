"""The document string [t; d] the scorer reads: the title alone, or ``title | text``.

Kept apart from :mod:`relsum.scoring.scorer` (which re-exports it) so that the fidelity gate's and the
int8 calibration's pair builders import no scorer module.
"""

from __future__ import annotations

import logging
import math

logger = logging.getLogger(__name__)

#: Version of the document-string format built by :func:`join_title_text`; part of the fingerprint.
JOIN_FORMAT_VERSION = "title | text v1"


def is_missing(text: object) -> bool:
    """None, NaN, pandas' NA or "" (Arrow-backed pandas columns give pd.NA for nulls)."""
    if isinstance(text, str):
        return text == ""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return True
    return type(text).__name__ == "NAType"


def join_title_text(title: str, text: str | None = None) -> str:
    """The document string [t; d]: the title alone when ``text`` is empty/None/NaN, else ``title | text``."""
    if not isinstance(title, str) or not title.strip():
        raise ValueError(f"title must be a non-empty string, got {title!r}")
    if is_missing(text):
        return title
    if not isinstance(text, str):
        raise TypeError(f"text must be a string or None, got {type(text).__name__}")
    return f"{title} | {text}"


def lead_text(text: str | None, n_words: int) -> str:
    """The first ``n_words`` whitespace words of ``text`` (the ``lead`` candidate); ``""`` when missing.

    Why: a summary is capped at the served word cap, so the honest yardstick for it is the catalog text cut
    to the same number of words. Words are whitespace tokens, the unit of the served cap
    (:func:`relsum.policy.served.served_summary`); a separator left dangling at the cut (``... Black |``)
    is dropped, since it carries nothing and would read as a broken document.
    """
    if isinstance(n_words, bool) or not isinstance(n_words, int) or n_words < 1:
        raise ValueError(f"n_words must be an int >= 1, got {n_words!r}")
    if is_missing(text):
        return ""
    if not isinstance(text, str):
        raise TypeError(f"text must be a string or None, got {type(text).__name__}")
    words = text.split()[:n_words]
    while words and words[-1] in ("|", ";", ",", ":"):
        words.pop()
    return " ".join(words)


def lead_doc(title: str, text: str | None, n_words: int) -> str:
    """``title | first n_words of text`` (the title alone for empty text): the ``lead`` document, which the
    reward-model teacher also reads."""
    return join_title_text(title, lead_text(text, n_words) or None)
