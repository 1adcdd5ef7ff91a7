"""What machine a figure was measured on: CPU model, the instruction-set flags that decide which
scoring path pays, thread count and library versions.

Why: speed ratios of bf16 and int8 paths depend on the CPU class (AVX2 only, AVX-512 with native
bf16 / VNNI, AMX), so a ratio without its machine cannot be compared with another. Every benchmark
prints :func:`describe`, and the ``auto`` scoring path keys its cached choice by :func:`cpu_key`.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import platform
from pathlib import Path

logger = logging.getLogger(__name__)

#: Flags (as /proc/cpuinfo spells them) that decide which arithmetic is native on a CPU.
FLAGS_THAT_MATTER = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8", "avx512_vnni",
                     "avx_vnni")


@functools.lru_cache(maxsize=1)
def cpu_info() -> tuple[str, frozenset[str]]:
    """(CPU model name, set of flags) from /proc/cpuinfo; ("unknown", {}) where it cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown", frozenset()
    model, flags = "unknown", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model == "unknown":
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
    return model, flags


def has_flag(*names: str) -> bool:
    """Whether the CPU has any of ``names`` (``/proc/cpuinfo`` spelling)."""
    return any(n in cpu_info()[1] for n in names)


def native_bf16() -> bool:
    """bf16 dot products in hardware: AVX-512 BF16 (vdpbf16ps) or AMX-BF16 tiles."""
    return has_flag("avx512_bf16", "amx_bf16")


def native_int8() -> bool:
    """int8 dot products without int16 saturation: VNNI (AVX-512 or AVX) or AMX-INT8."""
    return has_flag("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_class() -> str:
    """A short name of the CPU class that speed ratios are reported per (docs/results.md keeps them apart)."""
    if has_flag("amx_bf16"):
        return "amx"
    if has_flag("avx512_bf16"):
        return "avx512-bf16"
    if has_flag("avx512f"):
        return "avx512" + ("-vnni" if has_flag("avx512_vnni") else "")
    if has_flag("avx2"):
        return "avx2" + ("-vnni" if has_flag("avx_vnni") else "")
    return platform.machine() or "unknown"


def versions() -> dict[str, str]:
    """torch, transformers and ONNX Runtime versions ("-" where not installed)."""
    out = {}
    for name in ("torch", "transformers", "onnxruntime"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            out[name] = "-"
    return out


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def summary() -> dict[str, object]:
    """The machine as a dict (for JSON next to measured figures)."""
    import torch

    model, flags = cpu_info()
    return {"cpu": model, "cpu_class": cpu_class(), "flags": [f for f in FLAGS_THAT_MATTER if f in flags],
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch_threads": torch_threads(),
            "logical_cpus": __import__("os").cpu_count(), **versions()}


def describe() -> str:
    """One line for a benchmark's header: CPU, class, flags (present / absent), threads, versions."""
    info = summary()
    model, flags = cpu_info()
    marks = " ".join(f"{f}{'+' if f in flags else '-'}" for f in FLAGS_THAT_MATTER)
    return (f"machine: {model} | class {info['cpu_class']} | {marks} | torch capability "
            f"{info['torch_cpu_capability']} | torch threads {info['torch_threads']} "
            f"of {info['logical_cpus']} "
            f"cpus | torch {info['torch']} | transformers {info['transformers']} | onnxruntime "
            f"{info['onnxruntime']}")


def cpu_key(threads: int | None = None) -> str:
    """A stable key of (CPU model, flags that matter, threads, versions): measurements transfer within it."""
    model, flags = cpu_info()
    parts = [model, ",".join(f for f in FLAGS_THAT_MATTER if f in flags), str(threads or torch_threads()),
             *(f"{k}={v}" for k, v in sorted(versions().items()))]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
