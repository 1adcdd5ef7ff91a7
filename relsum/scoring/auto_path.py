"""``path: auto``: measure the gate-passing inference paths once per machine and use the fastest.

Why: which path pays depends on the CPU class (bf16 only with native bf16, int8 best with VNNI, AMX
changes both) and on the thread count, so no fixed default is right everywhere. The first scorer
with ``path=auto`` for a (model fingerprint, CPU model + flags, threads, library versions, device,
gate calibration set) runs every candidate path through the fidelity gate, times the survivors and
fp32 on the same mixed-length golden pairs (interleaved rounds, best of each, so load on a shared
machine hits every path alike), and caches the choice with all its figures as
``<store root>/.auto/<key>.json``. Later scorers (every stage, every process) read the file.
A fast path is chosen only if it beats fp32 by :data:`MIN_GAIN`; otherwise fp32 (exact) wins.
``relsum scores stats`` prints the cached choices and why.

The cache is a plain file anyone can edit or damage: a file that is not a JSON object of this version,
misses a field, or names a path that is unknown, not a candidate, or not one that passed its gate, is
ignored (logged with the reason) and the choice is measured again and rewritten.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from pathlib import Path

logger = logging.getLogger(__name__)

AUTO_VERSION = 1
MIN_GAIN = 1.05
TIMING_PAIRS = 256
ROUNDS = 2
AUTO_DIR = ".auto"


def candidates(scorer) -> list[str]:
    """Paths auto considers (fp32 first: the reference that is always allowed)."""
    from relsum.scoring.fast import PATHS

    wanted = scorer.config.auto_paths or [p for p in PATHS if p != "fp32"]
    return ["fp32", *[p for p in wanted if p != "fp32"]]


def auto_key(scorer) -> str:
    """What the measurement transfers within: model, machine, threads, device, gate set, candidates."""
    from relsum.core.machine import cpu_key
    from relsum.scoring.calibration import calibration_set
    from relsum.scoring.fidelity import calibration_key

    config = scorer.config
    calib = calibration_set(config.gate_golden, config.gate_max_pairs)
    parts = [f"v{AUTO_VERSION}", scorer.fp32_fingerprint, cpu_key(config.num_threads), config.device,
             calibration_key(calib), config.int8_fp32_layers, ",".join(candidates(scorer))]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]


def choice_file(scorer) -> Path:
    return scorer.store_root / AUTO_DIR / f"{auto_key(scorer)}.json"


def choice_problem(data, allowed: list[str] | None = None) -> str | None:
    """Why ``data`` is not a usable cached choice (None if it is); ``allowed``: this scorer's candidates."""
    from relsum.scoring.fast import PATHS

    if not isinstance(data, dict):
        return f"not a JSON object but {type(data).__name__}"
    if data.get("version") != AUTO_VERSION:
        return f"version {data.get('version')!r}, expected {AUTO_VERSION}"
    for key, kind in (("chosen", str), ("reason", str), ("figures", dict)):
        if not isinstance(data.get(key), kind):
            return f"{key!r} missing or not a {kind.__name__}"
    chosen, figures = data["chosen"], data["figures"]
    if chosen not in PATHS or chosen == "auto":
        return f"unknown path {chosen!r}"
    if allowed is not None and chosen not in allowed:
        return f"path {chosen!r} is not one of the candidates {allowed}"
    for path, fig in figures.items():
        ratio = fig.get("ratio_to_fp32", 0.0) if isinstance(fig, dict) else None
        if not (isinstance(fig, dict) and isinstance(fig.get("status"), str)
                and isinstance(fig.get("detail"), str) and isinstance(ratio, int | float)):
            return f"figures of {path!r} malformed"
    if chosen != "fp32" and figures.get(chosen, {}).get("status") != "passed":
        return f"path {chosen!r} is chosen but did not pass its gate"
    return None


def load_choice(file: Path, allowed: list[str] | None = None, *, quiet: bool = False,
                then: str = "left out") -> dict | None:
    """The cached choice in ``file``, or None (missing, or ignored with the reason and ``then`` logged)."""
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        problem = f"unreadable: {exc}"
    else:
        problem = choice_problem(data, allowed)
    if problem is None:
        return data
    if not quiet:
        logger.warning("ignoring the cached path-auto choice %s (%s); %s", file, problem, then)
    return None


def resolve_auto(scorer) -> dict:
    """The cached choice for this scorer, measuring it first (under a lock, once) if there is none."""
    from relsum.data.io import write_json_atomic
    from relsum.scoring.store import exclusive_lock
    from relsum.scoring.store_layout import write_marker

    file, allowed = choice_file(scorer), candidates(scorer)
    choice = load_choice(file, allowed, then="measuring again")
    if choice is None:
        with exclusive_lock(file.parent):  # concurrent processes (Ray actors, DDP ranks) measure once
            choice = load_choice(file, allowed, quiet=True)
            if choice is None:
                choice = measure(scorer)
                choice["key"] = file.stem
                write_json_atomic(choice, file)
                write_marker(scorer.store_root)
    logger.info("scorer path auto -> %s (%s)", choice["chosen"], choice["reason"])
    return choice


def _timing_pairs(scorer) -> list[tuple[str, str]]:
    from relsum.scoring.calibration import calibration_set

    calib = calibration_set(scorer.config.gate_golden, scorer.config.gate_max_pairs)
    calib = calib.sample(n=min(TIMING_PAIRS, len(calib)), random_state=0)
    return list(dict.fromkeys(zip(calib["query"], calib["doc"], strict=True)))


def measure(scorer) -> dict:
    """Gate every candidate, time the ones that pass against fp32, and pick the fastest."""
    from relsum.core import machine
    from relsum.scoring.fidelity import FidelityGateError, ensure_gate
    from relsum.scoring.runners import PathUnavailableError

    figures: dict[str, dict] = {}
    runners = {"fp32": scorer.fp32_runner}
    for path in candidates(scorer)[1:]:
        try:
            runner = scorer.build_path_runner(path)
            gate = ensure_gate(scorer, runner, path)
        except PathUnavailableError as exc:
            figures[path] = {"status": "unavailable", "detail": str(exc)}
            continue
        except FidelityGateError as exc:
            figures[path] = {"status": "refused", "detail": str(exc)}
            continue
        runners[path] = runner
        figures[path] = {"status": "passed", "detail": gate.message()}
    pairs = _timing_pairs(scorer)
    best: dict[str, float] = {path: float("inf") for path in runners}
    with scorer.threads():
        for runner in runners.values():  # warm-up: first-call allocations and JIT out of the timings
            scorer.compute(pairs[:8], desc=None, runner=runner)
        for _ in range(ROUNDS):
            for path, runner in runners.items():
                start = time.perf_counter()
                scorer.compute(pairs, desc=None, runner=runner)
                best[path] = min(best[path], time.perf_counter() - start)
    for path, seconds in best.items():
        figures.setdefault(path, {"status": "reference", "detail": "fp32 torch eager"})
        figures[path].update({"pairs_per_s": round(len(pairs) / seconds, 2),
                              "ratio_to_fp32": round(best["fp32"] / seconds, 3)})
    fastest = min(best, key=best.get)
    gain = best["fp32"] / best[fastest]
    if fastest != "fp32" and gain >= MIN_GAIN:
        chosen, reason = fastest, f"fastest gate-passing path, {gain:.2f}x fp32 on {len(pairs)} golden pairs"
    else:
        chosen, reason = "fp32", (f"no gate-passing path beat fp32 by {MIN_GAIN:.2f}x (best {fastest} "
                                  f"{gain:.2f}x) on {len(pairs)} golden pairs")
    return {"version": AUTO_VERSION, "chosen": chosen, "reason": reason, "figures": figures,
            "timing_pairs": len(pairs), "model_dir": str(scorer.model_dir), "fp32_fingerprint":
            scorer.fp32_fingerprint, "machine": machine.summary(),
            "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}


def list_choices(root: Path) -> list[dict]:
    """Every cached auto choice under a store root, newest first."""
    folder = Path(root) / AUTO_DIR
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    choices = [c for c in (load_choice(f) for f in files) if c]
    return sorted(choices, key=lambda c: str(c.get("measured_at", "")), reverse=True)


def format_choice(choice: dict) -> str:
    """A few lines: the chosen path, why, and each candidate's figures."""
    m = choice.get("machine") if isinstance(choice.get("machine"), dict) else {}
    lines = [f"auto {str(choice.get('key', '?'))[:12]}: {choice['chosen']} - {choice['reason']}",
             f"  model {choice.get('model_dir')} | {m.get('cpu')} ({m.get('cpu_class')}), "
             f"{m.get('torch_threads')} threads | measured {choice.get('measured_at')}"]
    for path, fig in choice["figures"].items():
        speed = f"{fig['ratio_to_fp32']:.2f}x fp32" if "ratio_to_fp32" in fig else "-"
        lines.append(f"  {path:<17} {fig['status']:<11} {speed:<11} {fig['detail'][:150]}")
    return "\n".join(lines)
