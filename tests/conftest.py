"""Session-wide fixtures: tiny local models are built once per test session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from relsum.core.paths import SAMPLE_DIR  # noqa: E402

CATALOG = SAMPLE_DIR / "products.jsonl"


def _catalog() -> pd.DataFrame:
    """300 real products (title, text = description | features), or a synthetic catalog if absent."""
    if CATALOG.exists():
        df = pd.read_json(CATALOG, lines=True).head(320)
        df["text"] = df["description"].fillna("") + " | " + df["features"].fillna("")
        return df[["product_id", "title", "text"]].reset_index(drop=True)
    colours, kinds = ["Black", "White", "Red", "Blue"], ["Headphones", "Cable", "Mouse", "Keyboard"]
    rows = [{"product_id": f"p{i}", "title": f"Acme {kinds[i % 4]} {i}",
             "text": f"Durable {kinds[i % 4].lower()} for home | product colour: {colours[i % 4]} | "
                     f"weight: {i % 90 + 10}"}
            for i in range(320)]
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def tiny_cross_encoder_dir(tmp_path_factory):
    """A tiny random BERT cross-encoder with the MiniLM tokenizer, saved as safetensors."""
    from relsum.scoring.tiny import build_tiny_cross_encoder

    return build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny_ce"), seed=0)


@pytest.fixture(scope="session")
def sample_dir():
    """The relevance sample shipped in the package."""
    from relsum.core.paths import SAMPLE_DIR

    return SAMPLE_DIR


@pytest.fixture(scope="session")
def golden_subset(tmp_path_factory, sample_dir):
    """``golden_subset(n)``: a new golden folder with the bundled sample's first ``n`` queries, their
    judgments and the judged products -- a tiny evaluation. Each call writes a fresh folder, so a test
    may change its copy without touching another test's."""
    def make(n_queries: int):
        folder = tmp_path_factory.mktemp("golden")
        queries = pd.read_csv(sample_dir / "golden" / "queries.csv", dtype=str).head(n_queries)
        judgments = pd.read_csv(sample_dir / "golden" / "judgments.csv", dtype=str)
        judgments = judgments[judgments.query_id.isin(queries.query_id)]
        queries.to_csv(folder / "queries.csv", index=False)
        judgments.to_csv(folder / "judgments.csv", index=False)
        (folder / "relsum.yaml").write_text((sample_dir / "golden" / "relsum.yaml").read_text())
        products = pd.read_json(sample_dir / "products.jsonl", lines=True, dtype={"product_id": str})
        products[products.product_id.isin(judgments.product_id)].to_json(folder / "products.jsonl",
                                                                          orient="records", lines=True)
        return folder
    return make


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


@pytest.fixture(scope="session")
def catalog() -> pd.DataFrame:
    return _catalog()


@pytest.fixture(scope="session")
def tiny_policy_dir(tmp_path_factory, catalog):
    """The tiny default policy, reduced: 300 products, vocab 1000, width 64, a step-bound ~20 s warm-up (no
    time cap, so quality does not depend on machine load)."""
    from relsum.policy.config import TinyPolicyConfig
    from relsum.policy.tiny import build_tiny_policy

    cfg = TinyPolicyConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4,
                           num_kv_heads=2, max_positions=512, max_prompt_tokens=128, max_summary_tokens=24,
                           epochs=8, batch_size=8, learning_rate=4e-3, max_seconds=0, seed=0)
    return build_tiny_policy(catalog.head(300), tmp_path_factory.mktemp("tiny_policy") / "policy", cfg)
