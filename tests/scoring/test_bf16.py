"""The bf16 scoring model: encoder cast and packed once, head in fp32, refused without native bf16."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from relsum.core.machine import native_bf16
from relsum.scoring import bf16, fast
from relsum.scoring.config import ScorerConfig
from relsum.scoring.factory import make_scorer
from relsum.scoring.scorer import Scorer


@pytest.fixture(scope="module")
def scorer(tiny_cross_encoder_dir):
    return Scorer(tiny_cross_encoder_dir, ScorerConfig(max_length=64, cache=False))


@pytest.mark.parametrize("pack", [False, True])
def test_bf16_model_casts_once_and_keeps_the_head_fp32(scorer, pack):
    if pack and not bf16.packing_available():
        pytest.skip("no oneDNN bf16 on this CPU / torch build")
    model = bf16.bf16_model(scorer.model, pack=pack)
    assert scorer.model.classifier.weight.dtype == torch.float32  # the fp32 reference is untouched
    assert model.classifier.weight.dtype == torch.float32
    assert model.bert.pooler.dense.weight.dtype == torch.float32
    assert model.bert.embeddings.word_embeddings.weight.dtype == torch.bfloat16
    layer = model.bert.encoder.layer[0]
    packed = [m for m in model.modules() if type(m).__name__ == "PackedLinear"]
    assert len(packed) == (6 * len(model.bert.encoder.layer) if pack else 0)  # q, k, v, out, ffn up, ffn down
    if pack:  # the FFN's exact GELU is fused into its first matmul
        assert isinstance(layer.intermediate.intermediate_act_fn, torch.nn.Identity)
    pairs = [("usb cable", "Belkin USB-C "
                           "cable | braided, 2 m"), ("laptop", "Dell XPS 13"), ("tv", "Samsung QLED")]
    ref = scorer.compute(pairs, desc=None)
    got = scorer.compute(pairs, desc=None, runner=fast.torch_runner(model, "cpu"))
    assert got.dtype == np.float32 and np.all((got > 0) & (got < 1))
    np.testing.assert_allclose(got, ref, atol=2e-3)  # bf16 encoder: close to fp32, not equal


def test_bf16_path_is_gated_or_refused_with_its_reason(tmp_path, tiny_cross_encoder_dir):
    config = ScorerConfig(max_length=64, path="bf16", store_dir=str(tmp_path), gate_max_pairs=60)
    if not native_bf16():
        with pytest.raises(fast.PathUnavailableError, match="no native bf16"):
            make_scorer(tiny_cross_encoder_dir, config)
        return
    from relsum.scoring.fidelity import FidelityGateError

    try:
        scorer = make_scorer(tiny_cross_encoder_dir, config)
    except FidelityGateError as exc:  # the tiny random model's scores sit near 0.5: a verdict, either way
        assert "REFUSED" in str(exc)
        return
    assert scorer.gate_result.passed and scorer.path == "bf16"
    assert "bf16" in scorer.path_reason() and scorer.fingerprint == scorer.path_fingerprint("bf16")
