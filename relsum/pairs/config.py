"""The description-gap filter's settings (:class:`FilterConfig`), without numpy or pandas.

Stage configs embed it, and ``relsum <stage> --help`` builds every default config, so it lives apart
from :mod:`relsum.pairs.filter` (the filter itself, which reads it); it is imported from here only.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from relsum.core.config import cfg


@dataclasses.dataclass
class FilterConfig:
    mode: Literal["threshold", "top_fraction"] = cfg(
        "threshold", help="'threshold' keeps gap >= threshold; 'top_fraction' keeps the largest gaps.")
    threshold: float = cfg(0.1, help="Minimum |r(q,[t;d]) - r(q,t)| to keep a pair (mode=threshold).")
    top_fraction: float = cfg(0.3, help="Fraction of scorable pairs with the largest gaps to keep "
                                        "(mode=top_fraction).")
    histogram_bins: int = cfg(20, help="Bins of the gap histogram in the filter statistics.")

    def __post_init__(self):
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if not 0.0 < self.top_fraction <= 1.0:
            raise ValueError(f"top_fraction must be in (0, 1], got {self.top_fraction}")
        if self.histogram_bins < 1:
            raise ValueError("histogram_bins must be >= 1")
