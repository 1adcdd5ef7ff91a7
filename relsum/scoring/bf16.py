"""The bf16 scoring model: weights cast and packed once, so bf16 pays on CPUs with native bf16.

Why not ``torch.autocast``: a profile of the scorer's batches (MiniLM-L6, ``benchmarks/profile_bf16.py``)
showed autocast spending its gain on work repeated at every call. Autocast casts every Linear's fp32
weight and bias to bf16 on each forward (3 ``aten::copy_`` per Linear, 38% of CPU time on an AVX-512
BF16 CPU), and a plain bf16 ``F.linear`` still lets oneDNN reorder the weight into its blocked layout on
every call (on AMX that reorder is larger than the tile multiply itself). Measured per Linear
(2048x384 @ 384x1536, AVX-512 BF16, 2 threads): fp32 44-52 ms, bf16 ``F.linear`` 20-24 ms, bf16 with a
prepacked weight 8-12 ms. So this module casts the encoder once and replaces each encoder Linear by
:class:`PackedLinear` (weight reordered once by ``torch.ops.mkldnn._reorder_linear_weight``, the op
inductor uses for frozen CPU graphs; the FFN's exact GELU is fused into its first matmul).

Measured on the same CPU (AMD EPYC, AVX-512 BF16, no AMX, 2 threads, a shared and loaded machine, so
ratios within one interleaved run): the bootstrap reward model passes the gate on bf16 (Spearman
1.0000, NDCG@5 equal) at 2.45x ``CrossEncoder.predict`` (``bench_scoring_paths.py``) and 1.9-3.2x the
fp32 scorer (``auto`` timing); the profile's CPU time per run on MiniLM batches: fp32 9.7 s, autocast
8.6 s (38% ``aten::copy_``), bf16 cast once 4.6 s, bf16 packed 2.3 s.

Precision: the pooler and the classifier head stay fp32 (their input is cast up), so the logit is not
rounded to bf16's 8-bit mantissa before the sigmoid (that would create ties and cost rank agreement).
Where the mkldnn ops are missing (a torch build without oneDNN, a non-x86 CPU) or the model lives on
a GPU, the encoder Linears run as plain bf16 ``F.linear``.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

logger = logging.getLogger(__name__)

_HEAD = re.compile(r"(^|\.)(pooler|classifier)(\.|$)")


def packing_available() -> bool:
    """Whether this torch has the oneDNN bf16 prepacked linear ops and the CPU runs them natively."""
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
                    and hasattr(torch.ops.mkldnn, "_linear_pointwise"))
    except (AttributeError, RuntimeError):
        return False


def _modules() -> tuple[type, type]:
    import torch

    class PackedLinear(torch.nn.Module):
        """A bf16 Linear whose weight oneDNN reordered once; ``attr="gelu"`` fuses exact GELU."""

        def __init__(self, linear: torch.nn.Linear, attr: str = "none", batch_hint: int = 2048) -> None:
            super().__init__()
            weight = linear.weight.detach().to(torch.bfloat16).contiguous()
            self.out_features = linear.out_features
            self.register_buffer("packed", torch.ops.mkldnn._reorder_linear_weight(weight, batch_hint))
            bias = linear.bias.detach().to(torch.bfloat16) if linear.bias is not None else None
            self.register_buffer("bias", bias)
            self.attr, self.algorithm = attr, ("none" if attr == "gelu" else "")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.ops.mkldnn._linear_pointwise(x.to(torch.bfloat16), self.packed, self.bias, self.attr,
                                                      [], self.algorithm)

    class FloatLinear(torch.nn.Linear):
        """An fp32 Linear that casts its input up (the head: no bf16 rounding of the logit)."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x.float())

    return PackedLinear, FloatLinear


def bf16_model(model: Any, device: str = "cpu", pack: bool | None = None) -> Any:
    """A bf16 copy of ``model`` for inference: encoder in bf16 (packed Linears on CPU), head in fp32."""
    import torch

    packed_cls, float_cls = _modules()
    pack = packing_available() if pack is None else pack
    pack = pack and not device.startswith("cuda")
    out = copy.deepcopy(model).to(device=device, dtype=torch.bfloat16).eval()
    fused_gelu = pack and getattr(model.config, "hidden_act", "") == "gelu"  # exact (erf) GELU only
    replaced = 0
    for name, module in list(out.named_modules()):
        if not isinstance(module, torch.nn.Linear):
            continue
        parent_name, _, child = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        if _HEAD.search(name):
            head = float_cls(module.in_features, module.out_features, bias=module.bias is not None,
                             device=device, dtype=torch.float32)
            head.load_state_dict(model.get_submodule(name).state_dict())
            setattr(parent, child, head.eval())
        elif pack:
            gelu = fused_gelu and child == "dense" and hasattr(parent, "intermediate_act_fn")
            setattr(parent, child, packed_cls(model.get_submodule(name), "gelu" if gelu else "none"))
            if gelu:
                parent.intermediate_act_fn = torch.nn.Identity()
            replaced += 1
    logger.info("bf16 model: %d encoder Linears %s, head in fp32", replaced,
                "prepacked for oneDNN" if pack else "as plain bf16 (no packing)")
    return out
