"""Cleaning a generated summary before it is stored and shown to the ranker.

The policy's raw completion is untrusted model text: it can echo the prompt frame, invent markup or
URLs, or run on. :func:`clean_summary` turns it into one line of plain words:

1. a leading echo of the prompt frame is cut: if the completion starts with ``[DESCRIPTION]`` /
   ``[TITLE]`` or with the instruction line, everything up to the end of the instruction
   (``... are:``) is dropped, and any bare leading ``[DESCRIPTION]:`` / ``[TITLE]:`` markers go; the
   instruction or system line of any other prompt variant is cut too (:func:`cut_instruction_echo`);
2. a completion that starts a *new* frame later (``... [DESCRIPTION]: ...``) is cut there;
3. HTML/XML tags, entities, control and invisible characters are removed
   (:func:`relsum.data.sanitize.clean_text`), as are Markdown emphasis/heading/code marks and U+FFFD
   (a multi-byte character cut in half by ``max_new_tokens``);
4. URLs (``http(s)://``, ``www.``) are removed;
5. whitespace runs become one space, leading separators (``:``, ``-``, ``,``) are stripped;
6. the result is capped at ``max_words`` whitespace tokens (so the cap falls on a word boundary).

The cap is in whitespace words, not model tokens, so it means the same for every tokenizer.

The steps after it (:func:`strip_numbering`, :func:`strip_labels`, :func:`strip_title_restatement`,
:func:`drop_repeated_segments`, and :func:`cut_instruction_echo` for every prompt variant's instruction)
remove what the ranker would read for nothing; :mod:`relsum.policy.served` runs them and counts them
(:func:`~relsum.policy.served.summary_defects`) with these same functions, so a pattern is counted
exactly when serving would remove it.
Callers do not use :func:`clean_summary` on completions directly:
:func:`relsum.policy.served.served_summary`
(echo cut, first line, this cleaning, repeated to a fixed point) is the one served form.
"""

from __future__ import annotations

import logging
import re

from relsum.data.sanitize import clean_text
from relsum.policy.prompt import INSTRUCTION

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
    stripped = cut_instruction_echo(stripped)
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


# --- What a served summary must not spend the ranker's tokens on (issue 22) -------------------------------
# Every step below only removes text, so a string none of them changes is a fixed point of all of them;
# the detectors in :func:`relsum.policy.served.summary_defects` are "this step would change the text".

def _instruction_sentences() -> list[str]:
    """The instruction lines and system lines of every prompt variant: what a policy echoes."""
    from relsum.policy.prompt import VARIANTS

    found = {INSTRUCTION}
    for variant in VARIANTS.values():
        found.add(variant.frame.rsplit("\n", 1)[-1])
        if variant.system:
            found.add(variant.system)
    return sorted(found, key=len, reverse=True)


def _words_pattern(sentence: str, n: int | None = None) -> str:
    return r"\s+".join(re.escape(w) for w in sentence.split()[:n])


#: an echo is recognised by the first 6 words of an instruction (a completion cut by max_new_tokens
#: stops mid-sentence); the full sentence is cut when present, else up to the end of that sentence
_ECHO_HEADS = [(re.compile(_words_pattern(s, 6), re.IGNORECASE), re.compile(_words_pattern(s), re.IGNORECASE))
               for s in _instruction_sentences()]
_SENTENCE_END = re.compile(r"[.:!?](?=\s|$)")

_LABEL = re.compile(
    r"^(?:(?:here\s+(?:is|are)\b[^:|;]{0,60}|(?:the\s+)?facts\s+(?:not\s+in\s+the\s+title|from\s+the\s+details)"
    r"|(?:(?:the|product|item|key|main|additional|other|one[\s-]line)\s+)*(?:details?|title|name|descriptions?"
    r"|attributes?|facts?|information|info|summary|features?|specifications?|specs|highlights?"
    r"|characteristics))\s*:\s*)", re.IGNORECASE)
_BULLETS = "\u2022\u25cf\u25aa\u2023\u25e6\u2219\u00b7"
_LEAD_MARK = re.compile(rf"^(?:\(?(\d{{1,2}})[.)]|[{_BULLETS}*+\-\u2013\u2014])\s+")
_MID_BULLET = re.compile(rf"\s+[{_BULLETS}]\s+")
_SEGMENT_SEP = re.compile(r"(\s*[|;]\s*|,\s+)")
_TITLE_SEP = re.compile(r"\s*[|;]\s*|,\s+|\s+[-\u2013\u2014]\s+|:\s+")
_SEGMENT_END = re.compile(r"\s*(?:$|[|;,:.(\-\u2013\u2014])")
_TAIL = re.compile(r"[\s|;,:\-\u2013\u2014]+$")
_WORD = re.compile(r"[^\W\d_]+|\d+")


def _tidy(text: str) -> str:
    return _TAIL.sub("", _LEAD.sub("", _SPACES.sub(" ", text))).strip()


def words_of(text: str) -> list[str]:
    """Lower-case letter runs and digit runs (``18V`` -> ``18``, ``v``): how title overlap is measured."""
    return _WORD.findall(text.lower())


def has_prompt_echo(text: str) -> bool:
    """Whether ``text`` holds a frame marker or the head of any prompt variant's instruction/system line."""
    return bool(_MARKER.search(text)) or any(head.search(text) for head, _ in _ECHO_HEADS)


def cut_instruction_echo(text: str) -> str:
    """``text`` without an echoed instruction/system line of any prompt variant: a leading one is dropped
    (to the end of its sentence), one that starts later ends the text there (what follows is the frame)."""
    for _ in range(len(_ECHO_HEADS) + 1):
        hits = [(m.start(), head, full) for head, full in _ECHO_HEADS if (m := head.search(text))]
        if not hits:
            return text
        start, head, full = min(hits, key=lambda h: h[0])
        if text[:start].strip():
            return text[:start]
        whole = full.search(text, start)
        if whole and whole.start() == start:
            text = text[whole.end():]
        else:
            end = _SENTENCE_END.search(text, head.search(text, start).end())
            text = text[end.end():] if end else ""
    return text


def starts_with_list_mark(text: str) -> bool:
    """Whether ``text`` opens with list numbering or a bullet (``1.``, ``1)``, ``-``, ``*``, ``•``)."""
    return bool(_LEAD_MARK.match(text.lstrip()))


def strip_numbering(text: str) -> str:
    """``text`` without list numbering/bullets: a leading ``1.``/``1)``/``-``/``•``, the ``2.``, ``3.`` ...
    that continue a numbered list, and bullets between items (each becomes ``, ``)."""
    first = _LEAD_MARK.match(text)
    if not first:
        return _MID_BULLET.sub(", ", text) if _MID_BULLET.search(text) else text
    text = text[first.end():]
    if first.group(1):
        n = int(first.group(1)) + 1
        while (mark := re.search(rf"(?:^|\s+)\(?{n}[.)]\s+", text)) is not None:
            before = text[:mark.start()].rstrip()
            text = before + ("" if not before or before[-1] in ",;|" else ",") + " " + text[mark.end():]
            n += 1
    return _tidy(_MID_BULLET.sub(", ", text))


def strip_labels(text: str) -> str:
    """``text`` without boilerplate labels (``Product details:``, ``Summary:``, ``Key facts:`` ...) at its
    start or at the start of a ``|``/``;`` segment; attribute keys (``material: steel``) stay."""
    parts = _SEGMENT_SEP.split(text)
    changed = False
    for i in range(0, len(parts), 2):
        if i and not parts[i - 1].strip().startswith(("|", ";")):
            continue
        while (m := _LABEL.match(parts[i])) is not None:
            parts[i], changed = parts[i][m.end():], True
    return _tidy(_drop_empty_segments(parts)) if changed else text


def _drop_empty_segments(parts: list[str]) -> str:
    """Segments (even items of a ``_SEGMENT_SEP.split``) joined again, the empty ones left out."""
    out: list[str] = []
    for i in range(0, len(parts), 2):
        if parts[i].strip():
            out += [parts[i - 1], parts[i]] if out else [parts[i]]
    return "".join(out)


def strip_title_restatement(text: str, title: str | None, *, precision: float = 0.8,
                            coverage: float = 0.6) -> str:
    """``text`` without a leading restatement of ``title``: the title's words verbatim, or a leading segment
    whose words are (>= ``precision``) title words and name most (>= ``coverage``) of the title's words.

    The title is shown to the ranker beside the summary; restating it adds no fact."""
    title_words = words_of(title or "")
    if not title_words or not text:
        return text
    spans = list(_WORD.finditer(text.lower()))
    if [m.group() for m in spans[:len(title_words)]] == title_words:
        rest = text[spans[len(title_words) - 1].end():]
        # a short title may open a phrase ("Drill" in "drill bits"): cut it only where a segment ends
        if len(title_words) >= 3 or _SEGMENT_END.match(rest):
            return _tidy(rest)
    sep = _TITLE_SEP.search(text)
    head = text[:sep.start()] if sep else text
    head_words, vocab = words_of(head), set(title_words)
    if not head_words:
        return text
    inside = sum(w in vocab for w in head_words) / len(head_words)
    named = len(vocab & set(head_words)) / len(vocab)
    if inside >= precision and named >= coverage:
        return _tidy(text[sep.end():]) if sep else ""
    return text


def drop_repeated_segments(text: str) -> str:
    """``text`` with a segment that repeats the one before it (same words, any case) removed:
    ``material: Polycarbonate | material: Polycarbonate`` -> ``material: Polycarbonate``."""
    parts = _SEGMENT_SEP.split(text)
    kept, last, changed = [parts[0]], words_of(parts[0]), False
    for i in range(2, len(parts), 2):
        key = words_of(parts[i])
        if key and key == last:
            changed = True
            continue
        kept += [parts[i - 1], parts[i]]
        last = key
    return _tidy("".join(kept)) if changed else text
