"""The data package's config: how strict the input contracts are and how judgment grades become labels
(:class:`ContractConfig`).

Standard library and relsum's config only: stage configs embed it (``validate``, ``summarize``), so it must
not load numpy or pandas, since ``relsum <stage> --help`` and argument errors build every default config.
The code that reads it: :mod:`relsum.data.contracts` and :mod:`relsum.data.golden`.
"""

from __future__ import annotations

import dataclasses

from relsum.core.config import cfg
from relsum.data.ids import grade_key

#: The paper's judgment grades -> labels (4 -> 1, 3 -> 0.5, else 0).
PAPER_GRADE_MAP = {"4": 1.0, "3": 0.5, "2": 0.0, "1": 0.0, "0": 0.0}


@dataclasses.dataclass
class ContractConfig:
    """How strict the contracts are and how grades become labels."""

    max_title_tokens: int = cfg(64, help="cap on cleaned title length, in whitespace-separated words")
    max_text_tokens: int = cfg(256, help="cap on cleaned description, attributes and text, in words")
    grade_map: dict[str, float] | None = cfg(
        dict(PAPER_GRADE_MAP), help="judgment grade -> label in [0, 1] (keys matched as strings, "
        "case-insensitively); None = take labels from the judgments' label column")
    default_label: float | None = cfg(None, help="label for grades not in grade_map; None rejects them")
    use_label_column: bool = cfg(False, help="take judgment labels from the label column, not grade_map")
    tail_fraction: float = cfg(1 / 3, help="share of queries, rarest by traffic, that count as tail")

    def __post_init__(self) -> None:
        if self.max_title_tokens < 1 or self.max_text_tokens < 1:
            raise ValueError("max_title_tokens and max_text_tokens must be >= 1")
        if not 0 < self.tail_fraction < 1:
            raise ValueError(f"tail_fraction must be in (0, 1), got {self.tail_fraction}")
        if self.grade_map is not None:
            self.grade_map = {grade_key(k): float(v) for k, v in self.grade_map.items()}
            bad = {k: v for k, v in self.grade_map.items() if not 0.0 <= v <= 1.0}
            if bad:
                raise ValueError(f"grade_map labels must be in [0, 1]: {bad}")
        if self.default_label is not None and not 0.0 <= self.default_label <= 1.0:
            raise ValueError(f"default_label must be in [0, 1], got {self.default_label}")
