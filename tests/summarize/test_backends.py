"""Backends agree with each other (greedy decoding) and fail clearly where they cannot run."""

from __future__ import annotations

import importlib.util

import pandas as pd
import pytest

from relsum.core.paths import SAMPLE_DIR
from relsum.summarize.backends import GenSettings, HFBackend, make_backend, model_version_of

from . import build_random_policy


@pytest.fixture(scope="module")
def products() -> pd.DataFrame:
    from relsum.data.contracts import validate_catalog

    df = pd.read_json(SAMPLE_DIR / "products.jsonl", lines=True).iloc[100:112]
    return validate_catalog(df).valid


@pytest.fixture(scope="module")
def policy(tmp_path_factory, products):
    return build_random_policy(tmp_path_factory.mktemp("policy"),
                               list(products["title"]) + list(products["text"]))


def test_model_version_tracks_config_and_adapter(tmp_path, policy):
    v = model_version_of(policy)
    assert v == model_version_of(policy) and v.startswith("mv-")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"w1")
    with_adapter = model_version_of(policy, adapter)
    (adapter / "adapter_model.safetensors").write_bytes(b"w2")
    assert len({v, with_adapter, model_version_of(policy, adapter)}) == 3


def test_vllm_backend_fails_clearly_without_vllm_or_gpu(policy):
    import torch

    if importlib.util.find_spec("vllm") is not None and torch.cuda.is_available():
        pytest.skip("vllm and a GPU are present")
    with pytest.raises(RuntimeError, match="vllm"):
        make_backend("vllm", GenSettings(str(policy)))
    with pytest.raises(ValueError, match="unknown backend"):
        make_backend("tgi", GenSettings(str(policy)))


@pytest.mark.slow
def test_ray_backend_matches_in_process_greedy(policy, products):
    pytest.importorskip("ray")
    # batch_size=1: each product is generated alone in both backends, so the comparison does not depend on
    # how a CPU's kernels round differently shaped (padded) batches
    settings = GenSettings(str(policy), max_new_tokens=6, batch_size=1, threads=1)
    titles, texts = list(products["title"]), list(products["text"])
    expected = HFBackend(settings).summarize(titles, texts)
    assert any(expected), "tiny policy produced only empty strings; the comparison would be vacuous"
    ray_backend = make_backend("ray", settings, num_actors=2, batch_size=3, num_cpus=2)
    try:
        assert ray_backend.summarize(titles, texts) == expected
        shards = [(0, titles[:5], texts[:5]), (1, titles[5:], texts[5:]), (2, [], [])]
        streamed = {s: (out, err) for s, out, err in ray_backend.summarize_shards(shards)}
    finally:
        ray_backend.close()
    assert streamed[0] == (expected[:5], [None] * 5)
    assert streamed[1] == (expected[5:], [None] * 7)
    assert streamed[2] == ([], [])
