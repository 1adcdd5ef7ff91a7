"""One JSONL line as a record, with the problems that make it a rejected row rather than a lost one.

Kept apart from :mod:`relsum.data.io` so the reader stays a list of formats. Two things that
``json.loads`` accepts without a word would otherwise cost data or the whole file:

- a key given twice (``{"title": "A", "title": "B"}``): ``json`` keeps only the last value, so the
  first is dropped silently;
- a lone surrogate escape (``"\\ud800"``): valid JSON but not valid Unicode. A string holding it
  cannot be encoded as UTF-8, so the Arrow-backed string column (pandas 3) refuses the whole file.
  It is replaced by U+FFFD (the contracts' mark for undecodable text) so the rest of the file reads.
"""

from __future__ import annotations

import json
import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def _unique_keys(pairs: list[tuple[str, Any]], repeated: list[str]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            repeated.append(key)
        obj[key] = value
    return obj


def _without_surrogates(value: Any) -> tuple[Any, bool]:
    """``value`` with lone surrogates replaced by U+FFFD, in nested lists and objects (keys too), and
    whether there were any."""
    if isinstance(value, str):
        fixed = _SURROGATE.sub("\ufffd", value)
        return fixed, fixed != value
    if isinstance(value, list):
        pairs = [_without_surrogates(v) for v in value]
        return [v for v, _ in pairs], any(found for _, found in pairs)
    if isinstance(value, dict):
        out, found = {}, False
        for key, item in value.items():
            (key, bad_key), (item, bad_item) = _without_surrogates(key), _without_surrogates(item)
            out[key], found = item, found or bad_key or bad_item
        return out, found
    return value, False


def parse_line(line: str) -> tuple[dict[str, Any], str | None]:
    """The record of one JSONL line and what is wrong with it (None when nothing is).

    A line that is not JSON or not an object gives an empty record; a repeated key or a lone surrogate
    keeps the (repaired) values, so the reject still shows the row.
    """
    repeated: list[str] = []
    try:
        obj = json.loads(line, object_pairs_hook=lambda pairs: _unique_keys(pairs, repeated))
    except json.JSONDecodeError as exc:
        return {}, f"invalid JSON ({exc.msg})"
    if not isinstance(obj, dict):
        return {}, "not a JSON object"
    problems = []
    if "\\u" in line:  # a lone surrogate can only come from an escape
        bad, fixed = [], {}
        for key, value in obj.items():  # rebuilt in order, so the columns keep the file's order
            one, found = _without_surrogates({key: value})
            fixed.update(one)
            if found:
                bad.append(repr(next(iter(one))))
        if bad:
            obj = fixed
            problems.append(f"lone surrogate escape (not valid Unicode) in {', '.join(bad)}")
    if repeated:
        names = ", ".join(sorted({repr(_SURROGATE.sub("\ufffd", k)) for k in repeated}))
        problems.append(f"key {names} given twice (JSON keeps only the last value)")
    return obj, "; ".join(problems) or None
