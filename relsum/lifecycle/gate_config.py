"""The deployment gate's settings (:class:`SummaryGateConfig`), without numpy or pandas.

Stage configs embed it (``relsum ablate``), so it lives apart from :mod:`relsum.lifecycle.gate` (the gate
itself, which re-exports it) and ``relsum <stage> --help`` loads neither library.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from relsum.core.config import cfg


@dataclasses.dataclass
class SummaryGateConfig:
    margin: float = cfg(0.0, help="keep a summary when r(q,[t;s]) >= r(q,t) - margin (see rule)")
    rule: Literal["mean", "all"] = cfg("mean", help="mean: per-product mean difference >= "
                                                    "-margin; all: every query")
    keep_unjudged: bool = cfg(False, help="keep summaries of products that have no held-out query")

    def __post_init__(self) -> None:
        if self.margin < 0:
            raise ValueError("gate margin must be >= 0")
        if self.rule not in ("mean", "all"):
            raise ValueError("gate rule must be 'mean' or 'all'")
