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


@pytest.fixture(scope="session", autouse=True)
def _relsum_home(tmp_path_factory):
    """Stages that default to RELSUM_HOME (score store, MLflow, models) write into a temp folder."""
    home = tmp_path_factory.mktemp("relsum_home")
    previous = os.environ.get("RELSUM_HOME")
    os.environ["RELSUM_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("RELSUM_HOME", None)
    else:
        os.environ["RELSUM_HOME"] = previous
