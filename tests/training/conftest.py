"""Training fixtures: one tiny policy per session, built locally from a slice of the bundled catalog."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

CATALOG = Path("/work/shared/data/products.jsonl")


def _catalog() -> pd.DataFrame:
    """300 real products (title, text = description | features), or a synthetic catalog if absent."""
    if CATALOG.exists():
        df = pd.read_json(CATALOG, lines=True).head(320)
        df["text"] = df["description"].fillna("") + " | " + df["features"].fillna("")
        return df[["product_id", "title", "text"]].reset_index(drop=True)
    colours, kinds = ["Black", "White", "Red", "Blue"], ["Headphones", "Cable", "Mouse", "Keyboard"]
    rows = [{"product_id": f"p{i}", "title": f"Acme {kinds[i % 4]} {i}",
             "text": f"Durable {kinds[i % 4].lower()} for home | product colour: {colours[i % 4]} | weight: {i % 90 + 10}"}
            for i in range(320)]
    return pd.DataFrame(rows)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny matrices: one torch thread is faster and immune to oversubscription on a shared 2-core box."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def catalog() -> pd.DataFrame:
    return _catalog()


@pytest.fixture(scope="session")
def tiny_policy_dir(tmp_path_factory, catalog):
    """The tiny default policy, reduced: 300 products, vocab 1000, width 64, a step-bound ~20 s warm-up (no time cap, so quality does not depend on machine load)."""
    from relsum.training.config import TinyPolicyConfig
    from relsum.training.tiny_policy import build_tiny_policy

    cfg = TinyPolicyConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4,
                           num_kv_heads=2, max_positions=512, max_prompt_tokens=128, max_summary_tokens=24,
                           epochs=8, batch_size=8, learning_rate=4e-3, max_seconds=0, seed=0)
    return build_tiny_policy(catalog.head(300), tmp_path_factory.mktemp("tiny_policy") / "policy", cfg)


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
