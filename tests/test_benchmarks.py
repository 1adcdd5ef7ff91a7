"""The benchmark scripts still run against the current library (tiny sizes; figures are not checked)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script: str, *args: str) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                          env=env, timeout=300, cwd=BENCH)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_bench_scorer_runs(tiny_cross_encoder_dir):
    out = _run("bench_scorer.py", "--model", str(tiny_cross_encoder_dir), "--n", "12")
    assert "(a) cold" in out and "(b) evaluation with repeats" in out


def test_bench_metrics_runs():
    out = _run("bench_metrics.py", "--n-queries", "50", "--n-boot", "10")
    assert "target < 1000 ms" in out and "same value" in out
