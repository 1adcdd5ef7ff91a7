"""benchmarks/bench_algorithms.py: the equal-CPU-time comparison runs end to end in --tiny mode (figures not
checked) and reads its curves as step functions."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _module():
    spec = importlib.util.spec_from_file_location("bench_algorithms", BENCH / "bench_algorithms.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_curves_are_read_as_steps_and_the_winner_is_the_best_gain_at_the_demo_budget():
    bench = _module()
    curve = [{"cpu_min": 0.0, "reward": -0.30}, {"cpu_min": 2.0, "reward": -0.25},
             {"cpu_min": 5.0, "reward": -0.20}]
    assert bench.value_at(curve, 1.9) == -0.30 and bench.value_at(curve, 2.0) == -0.25
    assert bench.value_at(curve, 99) == -0.20
    runs = [{"arm": "a", "seed": 0, "curve": curve},
            {"arm": "b", "seed": 0, "curve": [{"cpu_min": 0.0, "reward": -0.30},
                                              {"cpu_min": 1.0, "reward": -0.28}]}]
    summary = bench.summarize(runs, demo_budget=3.0, budget=6.0)
    assert summary["a"]["gain_at_demo_budget"] == [pytest.approx(0.05)]
    assert summary["b"]["gain_at_budget_mean"] == pytest.approx(0.02)
    assert summary["a"]["gain_at_budget_mean"] == pytest.approx(0.10)


def test_parallel_runs_merge_into_one_report_and_refuse_mismatches(tmp_path):
    bench = _module()
    settings = {"budget_cpu_min": 6.0, "demo_budget_cpu_min": 3.0, "heldout_samples": 2,
                "learning_rate": 1e-4, "sampling_products": 64, "tiny": False, "machine": {"cpu": "x"}}

    def report(arm, reference, gain):
        curve = [{"cpu_min": 0.0, "reward": reference}, {"cpu_min": 2.0, "reward": reference + gain}]
        return {**settings, "arms": {arm: []}, "reference_reward": {"0": reference},
                "runs": [{"arm": arm, "seed": 0, "curve": curve}], "failures": []}

    merged = bench.merge_reports([report("grpo", -0.2, 0.01), report("rft", -0.2, 0.03)])
    assert [r["arm"] for r in merged["runs"]] == ["grpo", "rft"] and set(merged["arms"]) == {"grpo", "rft"}
    bench.write_report(merged, tmp_path)
    written = json.loads((tmp_path / "bench_algorithms.json").read_text())
    assert written["winner"] == "rft" and (tmp_path / "bench_algorithms.png").stat().st_size > 0
    with pytest.raises(SystemExit, match="reference reward"):
        bench.merge_reports([report("grpo", -0.2, 0.01), report("rft", -0.3, 0.03)])
    with pytest.raises(SystemExit, match="sampling_products"):
        other = {**report("rft", -0.2, 0.03), "sampling_products": 0}
        bench.merge_reports([report("grpo", -0.2, 0.01), other])


def test_every_arm_is_a_valid_demo_training_config():
    from relsum.core.config import load_config
    from relsum.pipelines.configs import DemoConfig

    bench = _module()
    algos = {arm: load_config(DemoConfig, None, bench.arm_overrides(arm, 1e-4)).train.trainer
             for arm in bench.ARMS}
    assert {a: t.algo for a, t in algos.items()} == {"grpo": "grpo", "grpo_tuned": "grpo", "dpo": "dpo",
                                                      "rft": "rft"}
    assert algos["dpo"].dpo.pairing == "best_worst" and algos["rft"].rft.samples_per_product == 8
    assert algos["rft"].rft.products_per_round == 0 and algos["dpo"].dpo.max_products == 0  # all products
    drawn = {arm: load_config(DemoConfig, None, bench.arm_overrides(arm, 1e-4, 64)).train.trainer
             for arm in ("dpo", "rft")}
    assert drawn["dpo"].dpo.max_products == 64 and drawn["rft"].rft.products_per_round == 64
    assert drawn["rft"].rft.rounds == 10  # rounds of drawn products until the CPU budget ends
    tuned = algos["grpo_tuned"].grpo.to_grpo_config("/tmp/unused")
    assert tuned.scale_rewards == "none" and tuned.mask_truncated_completions and tuned.num_generations == 8


@pytest.mark.slow
def test_tiny_bench_writes_curves_for_every_arm(tmp_path, tiny_policy_dir, tiny_cross_encoder_dir):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_algorithms.py"), "--tiny", "--seeds", "0", "--budget-cpu-min",
         "0.25", "--demo-budget-cpu-min", "0.15", "--eval-every-cpu-min", "0.1", "--heldout-products", "3",
         "--heldout-samples", "2", "--max-products", "16", "--threads", "1", "--out", str(tmp_path),
         "--policy", str(tiny_policy_dir), "--reward-model", str(tiny_cross_encoder_dir)],
        capture_output=True, text=True, env=env, timeout=900, cwd=BENCH)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "avx" in proc.stdout.lower() or "cpu" in proc.stdout.lower()  # machine.describe() printed
    report = json.loads((tmp_path / "bench_algorithms.json").read_text())
    assert {r["arm"] for r in report["runs"]} == {"grpo", "grpo_tuned", "dpo", "rft"}
    for run in report["runs"]:
        curve = run["curve"]
        assert curve[0]["cpu_min"] == 0 and curve[-1].get("final") and len(curve) >= 2
        assert [p["cpu_min"] for p in curve] == sorted(p["cpu_min"] for p in curve)
    assert report["winner"] in report["summary"]
    assert (tmp_path / "bench_algorithms.png").stat().st_size > 1000
