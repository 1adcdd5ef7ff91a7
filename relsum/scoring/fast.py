"""Fast inference paths for the scorer, each admitted only after a fidelity gate against fp32.

Why: MiniLM-L6 already runs near fp32 peak on a CPU, so the only remaining speed is cheaper
arithmetic (bf16, int8) or a leaner runtime (ONNX Runtime). Cheaper arithmetic changes scores, so a
path is used only after it passes the fidelity gate of :mod:`relsum.scoring.fidelity`.

Paths (``ScorerConfig.path``):
- ``fp32``: the reference (torch eager).
- ``bf16``: the encoder cast to bfloat16 once, its Linears prepacked for oneDNN (see
  :mod:`relsum.scoring.bf16`: autocast recast the weights at every call and lost the gain); the head
  stays fp32. CPU only with native bf16 (avx512_bf16 / AMX), else refused.
- ``onnx-fp32`` / ``onnx-int8``: ONNX Runtime on a model exported by ``torch.onnx.export``; int8 is
  ``onnxruntime.quantization.quantize_dynamic`` (weights int8 per output channel, activations quantized
  per batch). Needs ``onnxruntime`` and ``onnx`` (the ``onnx`` extra). Exports are cached under the store
  root.
- ``onnx-int8-static``: ONNX Runtime static QDQ int8, activation scales calibrated once, so a pair's
  score does not depend on its batch (see :mod:`relsum.scoring.int8_static`).
- ``torch-int8``: ``torch.ao.quantization.quantize_dynamic`` on the Linear layers, per channel (no extra
deps).

The int8 recipe (both runtimes) keeps the classifier head and the encoder layers named by
``ScorerConfig.int8_fp32_layers`` (default the first and the last) in fp32 and quantizes weights per
output channel with 7-bit range (``reduce_range``: AVX2 CPUs without VNNI multiply u8 x s8 pairs into
saturating int16, which full 8-bit weights can overflow). Measured on the bootstrap reward model and the
golden sample: per-tensor int8 of every layer gives Spearman 0.988 and moves NDCG@5 by +0.005;
per-channel keeps Spearman at 0.997 but moves NDCG@5 by -0.010; keeping the first and last layers in
fp32 as well gives Spearman 0.9985 and |dNDCG@5| 0.0004, at 1.2-1.4x fp32 speed on an AVX2 CPU.
Dynamic int8 picks activation scales per batch, so a pair's int8 score depends (slightly) on which pairs
share its batch: under other batch sizes the same recipe measured |dNDCG@5| 0.0006 and was refused. The
store keeps whatever was computed first; use fp32, onnx-fp32 or onnx-int8-static (scales fixed once,
canonical padding) where scores must not depend on the batch.
- ``fp16-cuda``: the model in float16 on a CUDA device; refused without CUDA.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from relsum.core.machine import native_bf16
from relsum.scoring.config import PATHS, parse_layers  # with the config: it checks them, numpy-free
from relsum.scoring.runners import PathUnavailableError, Runner, in_layers

logger = logging.getLogger(__name__)


def check_path(path: str, device: str) -> None:
    """Refuse a path that cannot run on this machine, saying why."""
    import torch

    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    cuda = device.startswith("cuda")
    if path == "fp16-cuda" and not (cuda and torch.cuda.is_available()):
        raise PathUnavailableError("path fp16-cuda needs device=cuda and a CUDA GPU; "
                                   f"device={device!r}, "
                                   f"torch.cuda.is_available()={torch.cuda.is_available()}")
    if path == "bf16" and not cuda and not native_bf16():
        cap = torch.backends.cpu.get_cpu_capability()
        raise PathUnavailableError(f"path bf16 refused: this CPU (torch capability {cap}) has no native bf16 "
                                   "(avx512_bf16 or amx_bf16); bf16 would be emulated and slower than fp32")
    if path.startswith("onnx"):
        if device != "cpu":
            raise PathUnavailableError(f"path {path} runs ONNX Runtime on the CPU only; device={device!r}")
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise PathUnavailableError(f"path {path} needs onnxruntime and onnx (pip "
                                       f"install 'relsum[onnx]'): {exc}") from exc
    if path == "torch-int8" and device != "cpu":
        raise PathUnavailableError("path torch-int8 (dynamic quantization) runs on the CPU only")


def torch_runner(model, device: str, autocast_dtype=None) -> Runner:
    """Run a torch model; with ``autocast_dtype`` under torch.autocast on the model's device type."""
    import contextlib

    import torch

    def run(feats: dict[str, np.ndarray]) -> np.ndarray:
        inputs = {k: torch.from_numpy(v).to(device) for k, v in feats.items()}
        ctx = (torch.autocast(device_type=device.split(":")[0], dtype=autocast_dtype)
               if autocast_dtype is not None else contextlib.nullcontext())
        with torch.inference_mode(), ctx:
            return model(**inputs).logits.float().cpu().numpy()
    return run


def quantized_layers(n_layers: int, fp32_layers: str) -> list[int]:
    """Encoder layer indices the int8 recipe quantizes: all but those kept in fp32 (negatives from the
    end)."""
    keep = {k % n_layers for k in parse_layers(fp32_layers) if -n_layers <= k < n_layers}
    return [k for k in range(n_layers) if k not in keep]


def _recipe_name(layers: list[int]) -> str:
    """The int8 recipe quantizing ``layers`` (v2 = per channel, reduce_range, head in fp32)."""
    return "int8v2-q" + "_".join(map(str, layers))


def int8_tag(n_layers: int, fp32_layers: str) -> str:
    """Names the int8 recipe in export file names and fingerprints."""
    return _recipe_name(quantized_layers(n_layers, fp32_layers))


def export_onnx(model, out_dir: Path, use_types: bool, int8_layers: list[int] | None = None) -> Path:
    """Export (once) to ``out_dir/model.onnx``, atomically; with ``int8_layers`` also the int8 recipe
    quantizing only those encoder layers' MatMuls. Returns the file to load."""
    import torch

    from relsum.data.io import atomic_path

    out_dir.mkdir(parents=True, exist_ok=True)
    int8 = int8_layers is not None
    fp32_file = out_dir / "model.onnx"
    int8_file = out_dir / f"model-{_recipe_name(int8_layers or [])}.onnx"
    names = ["input_ids", "attention_mask", *(["token_type_ids"] if use_types else [])]
    if not fp32_file.is_file():
        class _Logits(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, *args):
                return self.inner(**dict(zip(names, args, strict=True))).logits

        # The dummy batch must contain padding: transformers skips the mask when there is none, and
        # the trace would bake that in (scores of padded batches would then be wrong).
        ids = torch.full((2, 16), 1000, dtype=torch.long)
        mask = torch.ones_like(ids)
        mask[1, 9:] = 0
        args = (ids, mask, *([torch.zeros_like(ids)] if use_types else []))
        axes = {n: {0: "batch", 1: "seq"} for n in names} | {"logits": {0: "batch"}}
        with atomic_path(fp32_file) as tmp, torch.inference_mode():
            torch.onnx.export(_Logits(model.float().cpu()).eval(), args, str(tmp), input_names=names,
                              output_names=["logits"], dynamic_axes=axes, opset_version=17, dynamo=False)
        logger.info("exported ONNX model to %s", fp32_file)
    if int8 and not int8_file.is_file():
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        nodes = [n.name for n in onnx.load(str(fp32_file)).graph.node if n.op_type in ("MatMul", "Gemm")]
        keep = [n for n in nodes if not in_layers(n, int8_layers)]
        if len(keep) == len(nodes):
            raise PathUnavailableError(f"onnx-int8: no MatMul of encoder layers {int8_layers} "
                                       f"found in the export "
                                       "(node names carry no 'layer.N'); set "
                                       "int8_fp32_layers to quantize some")
        # The quantizer first rewrites a Gemm into "<name>_MatMul" + Add, so exclude both spellings.
        exclude = keep + [f"{n}_MatMul" for n in keep]
        with atomic_path(int8_file) as tmp:
            quantize_dynamic(str(fp32_file), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                             reduce_range=True, nodes_to_exclude=exclude)
        logger.info("wrote dynamic int8 ONNX model (%d of %d MatMuls int8) to %s", len(nodes) - len(keep),
                    len(nodes), int8_file)
    return int8_file if int8 else fp32_file


def onnx_runner(model_file: Path, num_threads: int | None) -> Runner:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if num_threads:
        opts.intra_op_num_threads = num_threads
    session = ort.InferenceSession(str(model_file), opts, providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}

    def run(feats: dict[str, np.ndarray]) -> np.ndarray:
        return session.run(["logits"], {k: v for k, v in feats.items() if k in wanted})[0].astype(np.float32)
    return run


def build_runner(path: str, model, *, device: str, export_dir: Path, use_types: bool,
                 num_threads: int | None = None, int8_fp32_layers: str = "0,-1",
                 static_calib: tuple[str, Callable] | None = None) -> Runner:
    """The runner for ``path`` (after :func:`check_path`); ``model`` is the loaded fp32 torch model.

    ``static_calib`` = (file tag, () -> iterable of feature batches) calibrates ``onnx-int8-static``;
    its runner carries ``batch_invariant = True`` so the scorer pads each pair to its canonical width.
    """
    import torch

    check_path(path, device)
    if path == "fp32":
        return torch_runner(model, device)
    if path == "bf16":
        from relsum.scoring.bf16 import bf16_model

        return torch_runner(bf16_model(model, device), device)
    if path == "fp16-cuda":
        return torch_runner(copy.deepcopy(model).half(), device)
    layers = quantized_layers(model.config.num_hidden_layers, int8_fp32_layers)
    if path == "torch-int8":
        from torch.ao.quantization import per_channel_dynamic_qconfig

        spec = {name: per_channel_dynamic_qconfig for name, module in model.named_modules()
                if isinstance(module, torch.nn.Linear) and in_layers(name, layers)}
        if not spec:
            raise PathUnavailableError(f"torch-int8: no Linear of encoder layers {layers} found; "
                                       "set int8_fp32_layers to quantize some")
        quantized = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).cpu(), spec,
                                                           dtype=torch.qint8)
        return torch_runner(quantized.eval(), "cpu")
    model_file = export_onnx(model, export_dir, use_types, int8_layers=layers if path == "onnx-int8"
                             else None)
    if path == "onnx-int8-static":
        from relsum.scoring import int8_static

        if static_calib is None:
            raise ValueError("onnx-int8-static needs static_calib=(tag, batches)")
        tag, batches = static_calib
        out = export_dir / f"model-{int8_static.RECIPE}-{_recipe_name(layers)}-{tag}.onnx"
        from relsum.core.machine import native_int8

        model_file = int8_static.export_static(model_file, out, batches, layers,
                                               reduce_range=not native_int8())
        runner = onnx_runner(model_file, num_threads)
        runner.batch_invariant = True
        return runner
    return onnx_runner(model_file, num_threads)
