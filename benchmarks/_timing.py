"""Shared by the benchmark scripts (run as ``python benchmarks/<name>.py``, so this folder is on sys.path)."""

import time


def timed(fn, *args, **kwargs):
    """``(fn(*args, **kwargs), seconds)``."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start
