"""Fast inference paths and the fidelity gate on tiny real models."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from relsum.core.machine import native_bf16
from relsum.scoring import fast, fidelity
from relsum.scoring.config import ScorerConfig
from relsum.scoring.factory import make_scorer
from relsum.scoring.scorer import Scorer


@pytest.fixture(scope="module")
def spread_model_dir(tmp_path_factory):
    """Scores spread over [0, 1], so rank agreement between paths means something."""
    from relsum.scoring.tiny import build_tiny_cross_encoder

    return build_tiny_cross_encoder(tmp_path_factory.mktemp("spread_fast"), seed=1, initializer_range=0.5)


@pytest.fixture(scope="module")
def calib():
    return fidelity.calibration_set(max_pairs=200)


def test_unavailable_paths_are_refused_with_reason():
    with pytest.raises(ValueError, match="path must be one of"):
        ScorerConfig(path="fp8")
    with pytest.raises(fast.PathUnavailableError, match="CUDA"):
        fast.check_path("fp16-cuda", "cpu")
    if not native_bf16():
        with pytest.raises(fast.PathUnavailableError, match="no native bf16"):
            fast.check_path("bf16", "cpu")


def test_calibration_set_keeps_whole_queries(calib):
    full = fidelity.calibration_set()
    assert len(calib) <= 200 and len(full) > len(calib)
    for qid, group in calib.groupby("query_id"):
        assert len(group) == (full["query_id"] == qid).sum()
    assert fidelity.calibration_key(calib) != fidelity.calibration_key(full)


def test_degraded_paths_are_refused_with_measured_numbers(spread_model_dir, calib):
    scorer = Scorer(spread_model_dir, ScorerConfig(max_length=128, cache=False))
    pairs = list(zip(calib["query"], calib["doc"], strict=True))
    ref = scorer.compute(pairs, desc=None)
    assert fidelity.compare("fp32-again", ref, scorer.compute(pairs, desc=None), calib).passed
    rounded = fidelity.compare("round-1dp", ref, np.round(ref, 1), calib)  # ties + coarse ranks
    assert not rounded.passed and "REFUSED" in rounded.message() and "Spearman" in rounded.message()
    broken = copy.deepcopy(scorer.model)
    for layer in broken.bert.encoder.layer:  # zero the attention output projections: a wrong kernel
        layer.attention.output.dense.weight.data.zero_()
    degraded = scorer.compute(pairs, desc=None, runner=fast.torch_runner(broken, "cpu"))
    result = fidelity.compare("zeroed-attention", ref, degraded, calib)
    # Which way the broken path fails depends on the CPU's kernels: on AVX-512/AMX Xeons the zeroed
    # projections give constant scores (Spearman undefined, NaN), elsewhere a low Spearman. Both must
    # be refused, with the reason in the message.
    assert_refused(result)
    # the NaN outcome, on every CPU
    constant = fidelity.compare("constant", ref, np.full_like(ref, 0.5), calib)
    assert_refused(constant)
    assert math.isnan(constant.spearman) and "Spearman undefined" in constant.message()


def assert_refused(result: fidelity.FidelityResult) -> None:
    """Refused, and the message says why: NaN Spearman with its reason, or the measured low Spearman."""
    message = result.message()
    assert not result.passed and "REFUSED" in message and f"{result.ndcg_ref:.4f}" in message
    if math.isnan(result.spearman):
        assert result.reason in ("constant scores: Spearman undefined", "non-finite scores")
        assert result.reason in message and "Spearman vs fp32 nan" in message
    else:
        assert result.spearman < fidelity.MIN_SPEARMAN and f"{result.spearman:.4f}" in message


def test_onnx_fp32_passes_gate_once_and_has_its_own_fingerprint(tmp_path, spread_model_dir):
    pytest.importorskip("onnxruntime")
    base = ScorerConfig(max_length=128, store_dir=str(tmp_path), gate_max_pairs=200)
    ref = Scorer(spread_model_dir, base)
    onnx_cfg = ScorerConfig(**{**base.__dict__, "path": "onnx-fp32"})
    scorer = make_scorer(spread_model_dir, onnx_cfg)
    assert scorer.gate_result.passed and scorer.gate_result.spearman > 0.999
    assert scorer.fingerprint != ref.fingerprint and scorer.fp32_fingerprint == ref.fingerprint
    queries, titles = ["usb cable", "laptop", "tv"], ["Belkin USB-C cable", "Dell XPS 13", "Samsung QLED TV"]
    texts = ["braided 2 m " * 10, None, "hdmi: 4"]
    np.testing.assert_allclose(scorer.score(queries, titles, texts), ref.score(queries, titles, texts),
                               atol=1e-4)
    gates = list((tmp_path / scorer.fingerprint).glob("gate-*.json"))
    assert len(gates) == 1
    stamp = gates[0].stat().st_mtime_ns
    again = make_scorer(spread_model_dir, onnx_cfg)  # cached: the gate is not re-run
    assert again.gate_result.passed and gates[0].stat().st_mtime_ns == stamp


def test_failing_path_is_refused_by_the_scorer_and_cached(tmp_path, spread_model_dir):
    """Dynamic int8 on this deliberately wide-weight tiny model loses ranking: the scorer refuses it."""
    cfg = ScorerConfig(max_length=128, store_dir=str(tmp_path), gate_max_pairs=200, path="torch-int8",
                       int8_fp32_layers="")
    # nan: constant
    with pytest.raises(fidelity.FidelityGateError, match=r"REFUSED.*Spearman vs fp32 (0\.\d+|nan)"):
        make_scorer(spread_model_dir, cfg)
    with pytest.raises(fidelity.FidelityGateError, match="REFUSED"):  # second time from the cached result
        make_scorer(spread_model_dir, cfg)
    assert len(list(tmp_path.glob("*/gate-*.json"))) == 1


def test_int8_recipe_layers_and_identity(tmp_path, spread_model_dir):
    assert fast.quantized_layers(6, "0,-1") == [1, 2, 3, 4]
    assert fast.quantized_layers(6, "") == list(range(6)) and fast.quantized_layers(2, "0,1,7") == []
    with pytest.raises(ValueError, match="comma-separated integers"):
        ScorerConfig(int8_fp32_layers="first")
    scorer = Scorer(spread_model_dir, ScorerConfig(max_length=128, cache=False))
    n = scorer.model.config.num_hidden_layers
    keep_none = fast.build_runner("torch-int8", scorer.model, device="cpu", export_dir=tmp_path,
                                  use_types=True, int8_fp32_layers="")
    feats = {k: np.asarray(v) for k, v in scorer.tokenizer(["usb cable"], ["Belkin USB-C cable"],
                                                           return_tensors="np").items()}
    assert np.isfinite(keep_none(feats)).all()
    with pytest.raises(fast.PathUnavailableError, match="no Linear"):  # every layer kept in fp32
        fast.build_runner("torch-int8", scorer.model, device="cpu", export_dir=tmp_path, use_types=True,
                          int8_fp32_layers=",".join(map(str, range(n))))
    assert fast.int8_tag(n, "") != fast.int8_tag(n, "0")


def test_onnx_int8_quantizes_only_the_chosen_layers(tmp_path, spread_model_dir):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    scorer = Scorer(spread_model_dir, ScorerConfig(max_length=128, cache=False))
    n = scorer.model.config.num_hidden_layers
    out = fast.export_onnx(scorer.model, tmp_path, use_types=True, int8_layers=[n - 1])
    graph = onnx.load(str(out)).graph
    int8_ops = [node.name for node in graph.node
                if node.op_type in ("MatMulInteger", "DynamicQuantizeMatMul")]
    fp32_ops = [node.name for node in graph.node if node.op_type in ("MatMul", "Gemm")]
    assert int8_ops and all(f"layer.{n - 1}/" in name for name in int8_ops)
    assert any("classifier" in name for name in fp32_ops)  # the head stays fp32
    assert any(f"layer.{n - 1}/" not in name for name in fp32_ops)
