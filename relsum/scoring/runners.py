"""What every inference path of the scorer shares, kept below them all: the runner type, the error a
path raises when it cannot run here, and the encoder-layer matcher of the int8 recipes.

Why a module of its own: :mod:`relsum.scoring.fast` builds the runners, :mod:`relsum.scoring.int8_static`
exports the static int8 model that ``fast`` loads, and :mod:`relsum.scoring.fidelity` grades any runner.
With these names in ``fast``, the three imported each other in a circle; here they import nothing of
scoring, so each path imports downwards only.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from relsum.core.errors import RelsumError

#: feats (numpy int64 arrays: input_ids, attention_mask[, token_type_ids]) -> float32 logits (n, labels)
Runner = Callable[[dict[str, np.ndarray]], np.ndarray]


class PathUnavailableError(RelsumError, RuntimeError):
    """The requested inference path cannot run here (hardware or package missing)."""


_LAYER = re.compile(r"[./]layer\.(\d+)[./]")


def in_layers(name: str, layers: list[int]) -> bool:
    """Whether the module/node ``name`` (``...layer.N...``) lies in one of the encoder ``layers``."""
    match = _LAYER.search(name)
    return bool(match) and int(match.group(1)) in layers
