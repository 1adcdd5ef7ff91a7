"""Static int8 (ONNX Runtime QDQ): fixed activation scales, so a pair's score never depends on its batch."""

from __future__ import annotations

import numpy as np
import pytest

from relsum.scoring import fidelity, int8_static
from relsum.scoring.config import ScorerConfig
from relsum.scoring.scorer import Scorer

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def spread_model_dir(tmp_path_factory):
    from relsum.scoring.tiny import build_tiny_cross_encoder

    return build_tiny_cross_encoder(tmp_path_factory.mktemp("spread_static"), seed=1, initializer_range=0.5)


@pytest.fixture(scope="module")
def static(tmp_path_factory, spread_model_dir):
    """An fp32 scorer and its static int8 runner (every layer quantized: the tiny model has two)."""
    config = ScorerConfig(max_length=128, cache=False, int8_fp32_layers="", int8_calib_pairs=48,
                          store_dir=str(tmp_path_factory.mktemp("static_store")))
    scorer = Scorer(spread_model_dir, config)
    return scorer, scorer.build_path_runner("onnx-int8-static")


def test_canonical_width_depends_on_the_pair_alone():
    widths = [int8_static.canonical_width(n, 128) for n in (1, 8, 9, 16, 17, 127, 128)]
    assert widths == [8, 8, 16, 16, 24, 128, 128]
    assert int8_static.canonical_width(121, 124) == 124  # never past max_length


def test_static_int8_scores_do_not_depend_on_the_batch(static):
    scorer, runner = static
    assert runner.batch_invariant
    calib = fidelity.calibration_set(max_pairs=120)
    pairs = list(zip(calib["query"], calib["doc"], strict=True))
    together = scorer.compute(pairs, desc=None, runner=runner)
    alone = np.array([scorer.compute([p], desc=None, runner=runner)[0] for p in pairs[::9]])
    assert np.array_equal(alone, together[::9])  # bit-identical, not just close
    budget = scorer.config.max_tokens_per_batch
    try:  # other neighbours: reversed order, a quarter of the token budget (smaller, different batches)
        scorer.config.max_tokens_per_batch = 128
        regrouped = scorer.compute(pairs[::-1], desc=None, runner=runner)[::-1]
    finally:
        scorer.config.max_tokens_per_batch = budget
    assert np.array_equal(regrouped, together)
    reference = scorer.compute(pairs, desc=None)
    assert not np.array_equal(together, reference)  # it is int8 arithmetic, not fp32 in disguise
    assert np.corrcoef(together, reference)[0, 1] > 0.9


def test_static_model_is_qdq_with_the_head_in_fp32_and_named_by_its_calibration(static, spread_model_dir):
    scorer, _ = static
    files = list((scorer.store_root / ".onnx" / scorer.fp32_fingerprint).glob("model-int8s*.onnx"))
    assert len(files) == 1
    graph = onnx.load(str(files[0])).graph
    quantized = {n.input[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    assert quantized and any(n.op_type == "QuantizeLinear" for n in graph.node)
    head = [n for n in graph.node if n.op_type in ("MatMul", "Gemm") and "classifier" in n.name]
    assert head and not any(i in {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
                            for n in head for i in n.input)
    other = Scorer(spread_model_dir, ScorerConfig(**{**scorer.config.__dict__, "int8_calib_pairs": 32}))
    assert other.path_fingerprint("onnx-int8-static") != scorer.path_fingerprint("onnx-int8-static")
    assert scorer.path_fingerprint("onnx-int8-static") != scorer.path_fingerprint("onnx-int8")
