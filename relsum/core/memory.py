"""Peak resident memory (RSS) of this process over a block of code, per stage.

Why: "the demo needs 14 GB" is only actionable per stage (which stage, which buffer), and a peak is what
decides whether a laptop swaps or the OOM killer fires; the RSS at the end of a stage says nothing about
it. So :class:`PeakRss` gives the peak RSS within a block (``with PeakRss() as m: ...; m.peak_mb``) or
between laps (``m.lap()``, what the demo's stage timings record).

How: on Linux the kernel keeps the exact peak (``VmHWM`` in ``/proc/self/status``) and resets it when
``5`` is written to ``/proc/self/clear_refs`` (Linux >= 4.0); that costs nothing while the block runs and
misses no short spike, unlike sampling. Recorders nest: before any recorder resets the mark, the mark so far
is folded into every open recorder. Where the reset is refused (another OS, a locked-down container) a
thread samples the RSS every ``interval_s`` instead (``method == "sampled"``: a spike shorter than the
interval can be missed). Child processes are not counted (the stages run in this process).
"""

from __future__ import annotations

import logging
import resource
import sys
import threading
import weakref
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["PeakRss", "current_rss_mb", "hwm_resettable", "release_memory"]

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_LOCK = threading.Lock()
_OPEN: weakref.WeakSet[PeakRss] = weakref.WeakSet()  # recorders inside their block (or started)
_RESETTABLE: list[bool] = []  # cached answer of hwm_resettable()


def _status_kb(field: str) -> float | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def current_rss_mb() -> float:
    """This process's resident set now, in MB (10^6 bytes); the lifetime peak where /proc is missing."""
    kb = _status_kb("VmRSS")
    if kb is not None:
        return kb * 1024 / 1e6
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS, KiB elsewhere
    return peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6


def _hwm_mb() -> float | None:
    kb = _status_kb("VmHWM")
    return None if kb is None else kb * 1024 / 1e6


def _reset_hwm() -> bool:
    """Reset the kernel's peak mark to the current RSS, first folding the old mark into open recorders."""
    with _LOCK:
        old = _hwm_mb()
        if old is not None:
            for rec in _OPEN:
                rec._seen = max(rec._seen, old)
        try:
            _CLEAR_REFS.write_text("5")
        except OSError:
            return False
        return _hwm_mb() is not None


def hwm_resettable() -> bool:
    """Whether the kernel's exact peak can be used (Linux with a writable ``/proc/self/clear_refs``)."""
    if not _RESETTABLE:
        _RESETTABLE.append(_STATUS.exists() and _reset_hwm())
    return _RESETTABLE[0]


class PeakRss:
    """Peak RSS (MB) of this process within a ``with`` block, or between :meth:`lap` calls.

    ``start_mb`` is the RSS when the block (or lap) began, ``peak_mb`` the highest RSS in it (set on exit;
    while open, :meth:`peak_now` reads it), ``method`` ``"hwm"`` (exact, kernel) or ``"sampled"``.
    """

    def __init__(self, interval_s: float = 0.02) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.interval_s = interval_s
        self.method = "hwm" if hwm_resettable() else "sampled"
        self.start_mb = self.peak_mb = 0.0
        self._seen = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> PeakRss:
        """Open the recorder without a ``with`` block (a stage loop that calls :meth:`lap`); :meth:`stop`
        closes it. One left open only costs a weak reference (and the sampling thread where sampled)."""
        self._begin()
        with _LOCK:
            _OPEN.add(self)
        self._start_sampler()
        return self

    def stop(self) -> float:
        """Close the recorder; sets and returns ``peak_mb``."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        self.peak_mb = self.peak_now()
        with _LOCK:
            _OPEN.discard(self)
        return self.peak_mb

    def __enter__(self) -> PeakRss:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _begin(self) -> None:
        # reset first: the reset folds the old mark into every open recorder, this one included (a lap)
        if self.method == "hwm" and not _reset_hwm():
            self.method = "sampled"  # the reset stopped working (seccomp, ...): fall back for the rest
        self.start_mb = current_rss_mb()
        self._seen = self.start_mb

    def _start_sampler(self) -> None:
        if self.method == "sampled" and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._sample, name="relsum-peak-rss", daemon=True)
            self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._seen = max(self._seen, current_rss_mb())

    def peak_now(self) -> float:
        """The peak RSS (MB) since the block or the last lap began, read now."""
        now = current_rss_mb()
        hwm = _hwm_mb() if self.method == "hwm" else None
        return round(max(self._seen, now, hwm or 0.0), 1)

    def lap(self) -> float:
        """The peak RSS (MB) since the block or the last lap began; starts the next lap."""
        peak = self.peak_now()
        self._begin()
        if self in _OPEN:
            self._start_sampler()
        return peak


def release_memory() -> float:
    """Collect garbage and hand the allocator's free heap back to the OS; returns the RSS drop in MB.

    Why: after a stage frees its tensors (a GRPO update's saved activations, a policy that is no longer
    used) glibc keeps the freed blocks in its heap, so the RSS stays where the stage peaked and the next
    stage's peak is added on top of memory nobody uses. ``malloc_trim(0)`` returns every free page (glibc
    >= 2.8 releases pages inside the heap too, not only at its top). Elsewhere (no glibc) only the
    garbage collection runs. Call it between stages, never inside a hot loop (a trim costs milliseconds).
    """
    import contextlib
    import ctypes
    import ctypes.util
    import gc

    before = current_rss_mb()
    gc.collect()
    name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    if name:
        with contextlib.suppress(OSError, AttributeError):  # not glibc (e.g. musl has no malloc_trim)
            ctypes.CDLL(name).malloc_trim(0)
    released = max(0.0, before - current_rss_mb())
    logger.debug("released %.0f MB back to the OS", released)
    return released
