"""Training fixtures (the tiny policy and its catalog live in tests/conftest.py)."""

from __future__ import annotations

import pandas as pd
import pytest


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny matrices: one torch thread is faster and immune to oversubscription on a shared 2-core box."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def scorer(tiny_cross_encoder_dir):
    from relsum.scoring.scorer import Scorer

    return Scorer(tiny_cross_encoder_dir)


@pytest.fixture(scope="session")
def train_df(catalog) -> pd.DataFrame:
    """Training rows in the filter step's schema (labels alternate so rewards differ)."""
    df = catalog.iloc[300:316].reset_index(drop=True)
    queries = ["black headphones", "usb cable", "wireless mouse", "laptop bag"]
    return pd.DataFrame({
        "query_id": [f"q{i % 4}" for i in range(len(df))], "query": [queries[i % 4] for i in range(len(df))],
        "product_id": df["product_id"], "title": df["title"], "text": df["text"],
        "label": [[1.0, 0.0, 0.75, 0.25][i % 4] for i in range(len(df))],
        "r_title": 0.5, "r_desc": 0.7, "gap": 0.2,
    })
