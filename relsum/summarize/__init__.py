"""Catalog summarization: the resumable, incremental, sharded batch job and its generation backends.

:func:`served_summary` (in :mod:`relsum.summarize.served`) is the one function that turns generated text
into what is stored and served. Names are imported lazily (PEP 562), so the light ``served`` module can
be used by training code without importing the job, its backends and their dependencies.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "GenSettings": "relsum.summarize.backends", "HFBackend": "relsum.summarize.backends",
    "RayBackend": "relsum.summarize.backends", "SummarizerBackend": "relsum.summarize.backends",
    "VLLMBackend": "relsum.summarize.backends", "make_backend": "relsum.summarize.backends",
    "SummarizeConfig": "relsum.summarize.config", "read_job_output": "relsum.summarize.job",
    "run_summarize": "relsum.summarize.job", "clean_summary": "relsum.summarize.postprocess",
    "served_summary": "relsum.summarize.served",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
