"""Static int8 (ONNX Runtime QDQ): activation scales calibrated once, so a pair's score never depends
on its batch.

Why: dynamic int8 (``onnx-int8``, ``torch-int8``) picks each activation's scale from the batch it is
in, so the same pair scores (slightly) differently next to other pairs, and a score store keeps
whichever came first. Here ``onnxruntime.quantization.quantize_static`` fixes every activation scale
from calibration batches, and the scorer pads each pair of this path to a width that depends only on
its own length (next multiple of :data:`PAD_MULTIPLE`) and batches only pairs of equal width. Each row
then sees the same input, the same scales and the same kernels whatever its neighbours: int8 products
accumulate exactly in int32, and the fp32 ops left (LayerNorm, softmax, GELU, attention products) work
row by row. ``tests/scoring/test_int8_static.py`` checks bit-identical scores across batchings.

Recipe: the same layers as the dynamic recipe (first and last encoder layers and the head in fp32);
only MatMuls with a constant weight are quantized (``MatMulConstBOnly``; attention's activation x
activation products stay fp32); weights int8 per output channel, activations uint8 asymmetric, MinMax
calibration. Calibration pairs come from the bundled *train* sample (not the gate's golden set, so
the gate does not grade the data the scales were fitted on). ``reduce_range`` (7-bit weights) only on
CPUs without VNNI, where u8 x s8 pairs can saturate int16.

Measured (AMD EPYC, AVX-512 VNNI + BF16, no AMX, 2 threads; bootstrap reward model trained on 400
sample pairs; gate on all 862 golden pairs): 2.75x the fp32 scorer, but REFUSED by the gate (Spearman
0.9889, NDCG@5 0.7136 vs 0.7149). Keeping the FFN down-projections in fp32 as well raised Spearman to
0.9972 but moved NDCG@5 to 0.7079 (refused); Percentile calibration fails in onnxruntime 1.32 on
batches of different widths. Dynamic onnx-int8 on the same model: Spearman 0.9986, NDCG@5 0.7167
(refused). So the gate, not the speed, decides on this model; ``auto`` picks it only where it passes.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

PAD_MULTIPLE = 8
RECIPE = "int8s1"  # bump when the recipe changes (it is part of file names and fingerprints)


def canonical_width(length: int, max_length: int) -> int:
    """The padded width of a pair of ``length`` tokens: depends on the pair alone, never on its batch."""
    return min(max_length, -(-length // PAD_MULTIPLE) * PAD_MULTIPLE)


def calibration_pairs(calib_dir: str | None, max_pairs: int) -> list[tuple[str, str]]:
    """(query, doc) pairs that fit the activation scales: title-only and title | text of judged pairs."""
    from relsum.core.paths import SAMPLE_DIR
    from relsum.scoring.calibration import calibration_set

    calib = calibration_set(calib_dir or SAMPLE_DIR / "train")
    calib = calib.sample(n=min(max_pairs // 2, len(calib)), random_state=0) if max_pairs else calib
    titles = [d.split(" | ", 1)[0] for d in calib["doc"]]
    return list(dict.fromkeys([*zip(calib["query"], titles, strict=True),
                               *zip(calib["query"], calib["doc"], strict=True)]))


def calibration_key(pairs: list[tuple[str, str]], reduce_range: bool) -> str:
    h = hashlib.sha256(f"{RECIPE}|reduce_range={reduce_range}".encode())
    for q, d in pairs:
        h.update(f"{q}\x00{d}\x01".encode())
    return h.hexdigest()[:12]


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over ready feature batches."""

    def __init__(self, batches: Iterable[dict[str, np.ndarray]], wanted: set[str]) -> None:
        self._it: Iterator[dict[str, np.ndarray]] = iter(batches)
        self._wanted = wanted

    def get_next(self) -> dict[str, np.ndarray] | None:
        feats = next(self._it, None)
        return None if feats is None else {k: v for k, v in feats.items() if k in self._wanted}

    def rewind(self) -> None:  # the calibrator reads the batches once
        pass


def export_static(fp32_file: Path, out_file: Path, batches: Callable[[], Iterable[dict[str, np.ndarray]]],
                  int8_layers: list[int], reduce_range: bool) -> Path:
    """Write the static QDQ model (once, atomically) quantizing only ``int8_layers``' weight MatMuls."""
    if out_file.is_file():
        return out_file
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from relsum.data.io import atomic_path
    from relsum.scoring.runners import PathUnavailableError, in_layers

    graph = onnx.load(str(fp32_file)).graph
    nodes = [n.name for n in graph.node if n.op_type in ("MatMul", "Gemm")]
    keep = [n for n in nodes if not in_layers(n, int8_layers)]
    if len(keep) == len(nodes):
        raise PathUnavailableError("onnx-int8-static: no MatMul of encoder "
                                   f"layers {int8_layers} in the export")
    wanted = {i.name for i in graph.input}
    with atomic_path(out_file) as tmp:
        quantize_static(str(fp32_file), str(tmp), _Reader(batches(), wanted), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=["MatMul", "Gemm"], per_channel=True, reduce_range=reduce_range,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=keep + [f"{n}_MatMul" for n in keep],
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"MatMulConstBOnly": True})
    logger.info("wrote static int8 ONNX model (%d of "
                "%d MatMuls int8) to %s", len(nodes) - len(keep), len(nodes),
                out_file)
    return out_file
