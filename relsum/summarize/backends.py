"""Where summaries are generated: in-process Hugging Face (default), a Ray Data actor pool, or vLLM.

Every backend has the same small surface (:class:`SummarizerBackend`): ``summarize(titles, texts)``
returns one raw completion per product, in input order, and ``summarize_shards(shards)`` streams
results shard by shard so the job can commit each shard as soon as it is done. Error handling is
shared (:func:`summarize_safely`): a failing batch is retried item by item, so one poisonous product
costs one reject, not a shard.

- ``hf``: Where it runs: this process, ``generate_summaries`` (batched, length-sorted, left padding). When to
  use: default, CPU, small catalogs.
- ``ray``: Where it runs: Ray Data ``map_batches`` over an actor pool; each actor loads the policy once. When
  to use: many CPU/GPU workers, a cluster.
- ``vllm``: Where it runs: ``vllm.LLM`` (continuous batching, paged attention), adapter merged first. When to
  use: GPUs, large catalogs.

Ray and vLLM are imported lazily: neither is needed for the default backend.

The shared base is in :mod:`relsum.summarize.backend_base`, the Ray and vLLM backends in
:mod:`relsum.summarize.ray_backend` and :mod:`relsum.summarize.vllm_backend`; all are re-exported here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from relsum.summarize.backend_base import (
    BackendBase,
    GenSettings,
    PolicyGenerator,
    SummarizeFn,
    SummarizerBackend,
    summarize_safely,
)
from relsum.summarize.ray_backend import RayBackend
from relsum.summarize.vllm_backend import VLLMBackend

logger = logging.getLogger(__name__)

__all__ = ["GenSettings", "HFBackend", "RayBackend", "SummarizeFn", "SummarizerBackend", "VLLMBackend",
           "make_backend", "model_version_of", "policy_context_length", "summarize_safely"]


class HFBackend(BackendBase):
    """In-process generation with transformers: the embedded default (no extra dependencies)."""

    def __init__(self, settings: GenSettings):
        self._gen = PolicyGenerator(settings)

    def summarize(self, titles: Sequence[str], texts: Sequence[str]) -> list[str]:
        return self._gen(list(titles), list(texts))


def make_backend(name: str, settings: GenSettings, **options: Any) -> SummarizerBackend:
    """``"hf"`` | ``"ray"`` | ``"vllm"`` -> a backend; ``options`` are the backend's keyword settings."""
    if name == "hf":
        return HFBackend(settings)
    if name == "ray":
        return RayBackend(settings, **options)
    if name == "vllm":
        return VLLMBackend(settings, **options)
    raise ValueError(f"unknown backend {name!r}; use 'hf', 'ray' or 'vllm'")


def policy_context_length(model_dir: str | Path) -> int | None:
    """The model's context window from its ``config.json`` (``max_position_embeddings``), if stated."""
    import json

    path = Path(model_dir) / "config.json"
    if not path.is_file():
        return None
    conf = json.loads(path.read_text(encoding="utf-8"))
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        if isinstance(conf.get(key), int):
            return int(conf[key])
    return None


def model_version_of(model_dir: str | Path, adapter_dir: str | Path | None = None) -> str:
    """A stable version stamp: hash of the model's config/tokenizer files, weight file names and sizes,
    and the adapter's config and weight *contents* (adapters are small; base weights are not re-read)."""
    import hashlib

    h = hashlib.sha256()
    base = Path(model_dir)
    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        if (base / name).is_file():
            h.update(name.encode() + b"\0" + (base / name).read_bytes())
    for path in sorted(base.glob("*")):
        if path.suffix in {".safetensors", ".bin", ".pt", ".gguf"}:
            h.update(f"{path.name}:{path.stat().st_size}".encode())
    if adapter_dir:
        for path in sorted(Path(adapter_dir).glob("*")):
            if path.suffix in {".json", ".safetensors", ".bin"} and path.is_file():
                h.update(path.name.encode() + b"\0" + path.read_bytes())
    return "mv-" + h.hexdigest()[:16]
