"""Typed file lists of a stage's outputs: one frozen dataclass per stage whose field defaults are the file
names, so each name is written once and ``under(folder)`` gives the paths."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class OutputFiles:
    """Base class: subclasses declare ``kind: str = "file name"`` fields (frozen dataclasses)."""

    @classmethod
    def under(cls, out: str | Path) -> Any:
        """Every file of the stage in folder ``out`` (paths as strings, ready for JSON and XCom)."""
        return cls(**{f.name: str(Path(out) / f.default) for f in dataclasses.fields(cls)})

    def to_dict(self) -> dict[str, str]:
        """Kind -> path."""
        return dataclasses.asdict(self)
