"""Session-wide fixtures: tiny local models are built once per test session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_cross_encoder_dir(tmp_path_factory):
    """A tiny random BERT cross-encoder with the MiniLM tokenizer, saved as safetensors."""
    from relsum.scoring.tiny import build_tiny_cross_encoder

    return build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny_ce"), seed=0)


@pytest.fixture(scope="session")
def sample_dir():
    """The relevance sample shipped in the package."""
    from relsum.paths import SAMPLE_DIR

    return SAMPLE_DIR
