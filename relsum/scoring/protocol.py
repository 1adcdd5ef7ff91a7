"""What the pipelines need from a scorer, as a typing Protocol.

Why: the stages accept any object that scores (the real :class:`relsum.scoring.scorer.Scorer`, a fast
path, a test double) and record which scorer produced their outputs. Reading that record through
``getattr(scorer, "fingerprint", None)`` in five places hid a missing fingerprint; the Protocol makes
``fingerprint`` part of the contract (``None`` only for a scorer with no stable identity, e.g. a test double).
This module imports nothing heavy, so configs and stage modules can use it at import time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class RelevanceScorer(Protocol):
    """r(q, [t; s]) in [0, 1] for each (query, title, text) triple; ``texts[i]`` empty/None = title only."""

    @property
    def fingerprint(self) -> str | None:
        """Identity of the weights + document format + inference path (what a score store is keyed by)."""
        ...

    def score(self, queries: Sequence[str], titles: Sequence[str],
              texts: Sequence[str | None] | None = None) -> np.ndarray: ...


class GateOutcome(Protocol):
    """What a scorer keeps of the fidelity gate that admitted its path
    (:class:`relsum.scoring.fidelity.FidelityResult`)."""

    passed: bool

    def message(self) -> str: ...
