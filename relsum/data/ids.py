"""Ids and grades as lookup strings, with the standard library only.

Kept apart from :mod:`relsum.data.contract_types` (numpy, pandas) because
:class:`relsum.data.config.ContractConfig` normalises its ``grade_map`` keys with
:func:`grade_key` when it is built, which ``relsum <stage> --help`` does for every default config.
numpy's scalar types register with :mod:`numbers` (``np.integer`` is ``Integral``, ``np.floating`` is
``Real``), so they are recognised without importing numpy.
"""

from __future__ import annotations

import numbers
from typing import Any

from relsum.data.sanitize import is_missing


def as_id(value: Any) -> str | None:
    """An id as a stripped string (ints and whole floats without ``.0``); missing or blank -> None."""
    if isinstance(value, str):  # the common case (CSV cells), first
        return value.strip() or None
    if is_missing(value):
        return None
    if isinstance(value, bool):  # an Integral, but not an id (the contracts reject it before this)
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    text = str(value).strip()
    return text or None


def grade_key(value: Any) -> str | None:
    """A grade as a lookup string: ``3``, ``3.0`` and ``" 3 "`` -> ``"3"``; text stays text."""
    key = as_id(value)
    if key is None:
        return None
    try:
        number = float(key)
    except ValueError:
        return key
    return str(int(number)) if number.is_integer() else key
