"""The base policy a training run starts from: the configured folder, or the tiny default built once."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from relsum.policy.load import local_model_dir
from relsum.training.config import TrainConfig

logger = logging.getLogger(__name__)


def resolve_policy_dir(config: TrainConfig, catalog: pd.DataFrame | None = None) -> Path:
    """``config.policy.model_dir`` (``smollm2`` = converted once, see :mod:`relsum.policy.gguf`),
    or the tiny default under ``<out_dir>/tiny_policy`` (built once).

    The tiny default is built from ``catalog`` (title, text) when it is not there yet; a folder that
    already holds a tiny-policy build is reused as is.
    """
    from relsum.policy.tiny import MARKER_FILE, build_tiny_policy

    if config.policy.model_dir:
        return local_model_dir(config.policy.model_dir, "policy.model_dir")
    tiny_dir = Path(config.out_dir) / "tiny_policy"
    if (tiny_dir / MARKER_FILE).exists():
        return tiny_dir
    if catalog is None:
        raise ValueError("policy.model_dir is empty and no catalog was given to build "
                         "the tiny default policy")
    logger.info("policy.model_dir is empty: building the tiny default policy at %s", tiny_dir)
    return build_tiny_policy(catalog.drop_duplicates(subset=["title", "text"]), tiny_dir, config.tiny)
