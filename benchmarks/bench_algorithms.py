"""GRPO, tuned GRPO, DPO (best vs worst of N) and RFT at equal CPU time: held-out learning curves.

Run: ``python benchmarks/bench_algorithms.py [--tiny] [--pairs FILE] [--budget-cpu-min 24]
[--demo-budget-cpu-min 12] [--seeds 0 1 2] [--arms grpo grpo_tuned dpo rft] [--out DIR]``.

Why: on 2 cores the demo's 12 GRPO updates of 2 prompts x 4 completions see ~24 of ~360 training products
and the held-out reward does not move. This spends one CPU-time budget per arm and seed and records the
held-out expected reward (mean over ``--heldout-samples`` sampled summaries per product of
``-|r(q,[t;s]) - l|``, :mod:`relsum.training.policy_eval`) against CPU minutes, on the held-out products of
the
train split the demo uses (``relsum.pipelines.train.split_by_product``, the demo's holdout fraction,
label balancing and seed). The clock is the process CPU time (all threads; a shared machine slows the
wall clock, not this), started before the policy loads and paused while a checkpoint is evaluated.

Arms (each on the demo's training config, ``relsum.pipelines.configs.DemoConfig``):

* ``grpo``: GRPO as the demo configures it (G=4, 8 completions per update, the demo's learning rate,
  grounding penalty 0.5), with ``max_steps`` lifted and a constant schedule so the budget ends it;
* ``grpo_tuned``: GRPO set for tiny budgets per TRL's guidance: ``scale_rewards: none`` and ``loss_type:
  dr_grpo`` (Dr. GRPO: dividing by a near-zero group std turns scorer noise into full-size advantages),
  ``num_generations: 8`` (fewer all-tied groups), ``mask_truncated_completions: true`` (DAPO), the LoRA
  rate (~10x a full fine-tune's) and the product-level reward (one prompt per product, as DPO and RFT);
  TRL's loss is ~0 by construction at beta 0 and one iteration, so the curve, not the loss, is the signal;
* ``dpo``: DPO on best vs worst of 8 samples per product, product-level reward (``dpo.pairing=best_worst``);
* ``rft``: rejection-sampling fine-tuning, best of 8 per product, 2 rounds (``algo=rft``).

The demo's default algorithm should be the arm whose mean curve is highest at ``--demo-budget-cpu-min``
(printed as ``winner``). Writes ``bench_algorithms.json`` and ``bench_algorithms.png`` under ``--out``.
``--tiny`` runs the tiny policy and a tiny random cross-encoder on a few bundled products in seconds (the
suite's smoke test); its figures mean nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ARMS = ("grpo", "grpo_tuned", "dpo", "rft")
BIG = 1_000_000  # max_steps for arms the budget stops


def arm_overrides(arm: str, lr: float, sampling_products: int = 0) -> list[str]:
    """``train.trainer.*`` overrides of the demo's training config for one arm. With ``sampling_products``
    the sampling arms work on a seeded draw of that many products (``rft``: a new draw per round, rounds
    until the budget ends) instead of sampling every product before their first step."""
    no_options = "options.grounding_weight=0"
    table = {
        "grpo": [f"grpo.max_steps={BIG}", "grpo.lr_scheduler_type=constant", f"grpo.learning_rate={lr}"],
        "grpo_tuned": [f"grpo.max_steps={BIG}", "grpo.lr_scheduler_type=constant", f"grpo.learning_rate={lr}",
                       "grpo.num_generations=8", "grpo.per_device_train_batch_size=16",
                       "grpo.loss_type=dr_grpo",
                       "grpo.extra={scale_rewards: none, mask_truncated_completions: true}",
                       "options.product_reward=true", "options.product_max_queries=8"],
        "dpo": ["algo=dpo", no_options, "dpo.pairing=best_worst", "dpo.samples_per_product=8",
                f"dpo.learning_rate={lr}", "dpo.per_device_train_batch_size=8",
                f"dpo.max_products={sampling_products}"],
        "rft": ["algo=rft", no_options, "rft.samples_per_product=8",
                f"rft.rounds={10 if sampling_products else 2}", f"rft.products_per_round={sampling_products}",
                f"rft.learning_rate={lr}", "rft.per_device_train_batch_size=8"],
    }
    return [f"train.trainer.{o}" for o in table[arm]]


class CpuClock:
    """Process CPU seconds since start, minus the time spent in :meth:`paused` (checkpoint evaluation)."""

    def __init__(self, budget_s: float) -> None:
        self.budget_s, self.start, self.excluded = budget_s, time.process_time(), 0.0
        self.wall_start, self.wall_excluded = time.perf_counter(), 0.0

    def used(self) -> float:
        return time.process_time() - self.start - self.excluded

    def wall(self) -> float:
        return time.perf_counter() - self.wall_start - self.wall_excluded

    def exhausted(self) -> bool:
        return self.used() >= self.budget_s

    @contextlib.contextmanager
    def paused(self):
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            yield
        finally:
            self.excluded += time.process_time() - cpu
            self.wall_excluded += time.perf_counter() - wall


def make_evaluator(heldout, policy_cfg, scorer, k: int, temperature: float, seed: int):
    """``evaluate(model, tokenizer) -> held-out expected reward`` (fixed sampling seed: common random
    numbers across arms and checkpoints)."""
    from relsum.training.policy_eval import expected_pair_rewards, sample_products

    products = heldout.drop_duplicates("product_id")[["product_id", "title", "text"]]

    def evaluate(model, tokenizer) -> float:
        samples = sample_products(model, tokenizer, products, policy_cfg, k, temperature, seed=seed)
        return float(expected_pair_rewards(heldout, samples, scorer).mean())

    return evaluate


def curve_callback(clock: CpuClock, evaluate, every_s: float, curve: list):
    """A TrainerCallback: a curve point each ``every_s`` CPU seconds (at step ends), and a stop at the budget.

    The trainer hands callbacks its live model and tokenizer (``processing_class``), so the point measures
    the policy as it is at that step.
    """
    from transformers import TrainerCallback

    class Curve(TrainerCallback):
        next_at, steps = every_s, 0

        def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
            self.steps += 1
            used = clock.used()
            if used >= self.next_at:
                with clock.paused():
                    curve.append({"cpu_min": used / 60, "wall_min": clock.wall() / 60, "steps": self.steps,
                                  "reward": evaluate(model, processing_class)})
                while self.next_at <= used:
                    self.next_at += every_s
            if clock.exhausted():
                control.should_training_stop = True
            return control

    return Curve()


def run_arm(arm: str, seed: int, stage, train_df, heldout, scorer, args, reference: float) -> dict:
    """One arm and seed: train under the CPU budget, a curve point every ``--eval-every-cpu-min``."""
    tc = stage.trainer
    temperature = {"grpo": tc.grpo.temperature, "dpo": tc.dpo.temperature, "rft": tc.rft.temperature}[tc.algo]
    evaluate = make_evaluator(heldout, tc.policy, scorer, args.heldout_samples, temperature, seed)
    curve = [{"cpu_min": 0.0, "wall_min": 0.0, "steps": 0, "reward": reference}]
    clock = CpuClock(args.budget_cpu_min * 60)
    callback = curve_callback(clock, evaluate, args.eval_every_cpu_min * 60, curve)
    if tc.algo == "grpo":
        from relsum.training.grpo import train_grpo

        result = train_grpo(tc, train_df, scorer, callbacks=[callback])
    elif tc.algo == "dpo":
        from relsum.training.dpo import train_dpo

        result = train_dpo(tc, train_df, scorer, callbacks=[callback])
    else:
        from relsum.training.rft import train_rft

        result = train_rft(tc, train_df, scorer, callbacks=[callback], stop=clock.exhausted)
    used, wall = clock.used(), clock.wall()
    with clock.paused():
        model, tokenizer = result["model"], result["tokenizer"]
        curve.append({"cpu_min": used / 60, "wall_min": wall / 60, "steps": int(result["steps"]),
                      "reward": evaluate(model, tokenizer), "final": True})
    del model, result
    return {"arm": arm, "seed": seed, "curve": curve, "cpu_min": used / 60, "wall_min": wall / 60,
            "budget_exhausted": used >= clock.budget_s}


def value_at(curve: list[dict], cpu_min: float) -> float:
    """The curve's reward at ``cpu_min``: the last point measured at or before it (a step curve)."""
    return [p for p in curve if p["cpu_min"] <= cpu_min + 1e-9][-1]["reward"]


def summarize(runs: list[dict], demo_budget: float, budget: float) -> dict:
    import numpy as np

    out = {}
    for arm in dict.fromkeys(r["arm"] for r in runs):
        mine = [r for r in runs if r["arm"] == arm]
        at_demo = [value_at(r["curve"], demo_budget) - r["curve"][0]["reward"] for r in mine]
        at_end = [value_at(r["curve"], budget) - r["curve"][0]["reward"] for r in mine]
        out[arm] = {"gain_at_demo_budget_mean": float(np.mean(at_demo)), "gain_at_demo_budget": at_demo,
                    "gain_at_budget_mean": float(np.mean(at_end)), "gain_at_budget": at_end,
                    "seeds": [r["seed"] for r in mine]}
    return out


def plot(runs: list[dict], demo_budget: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colors = dict(zip(dict.fromkeys(r["arm"] for r in runs), palette, strict=False))
    for r in runs:
        xs = [p["cpu_min"] for p in r["curve"]]
        ys = [p["reward"] - r["curve"][0]["reward"] for p in r["curve"]]
        ax.step(xs, ys, where="post", color=colors[r["arm"]], alpha=0.8,
                label=r["arm"] if r["seed"] == min(x["seed"] for x in runs if x["arm"] == r["arm"]) else None)
    ax.axvline(demo_budget, color="grey", linestyle="--", label="demo budget")
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xlabel("CPU minutes (process time, evaluation excluded)")
    ax.set_ylabel("held-out expected reward - reference")
    ax.set_title("Equal CPU time: one line per arm and seed")
    ax.legend()
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def tiny_inputs(work: Path, n_products: int, policy: str = "", reward_model: str = ""):
    """(pairs, policy_dir, reward_model_dir) for --tiny: bundled search-log pairs of a few products, a quick
    tiny policy and a tiny random cross-encoder (unless given)."""
    import pandas as pd

    from relsum.core.paths import SAMPLE_DIR
    from relsum.data.config import ContractConfig
    from relsum.data.contracts import validate_catalog
    from relsum.data.io import read_table
    from relsum.policy.config import TinyPolicyConfig
    from relsum.policy.tiny import build_tiny_policy
    from relsum.scoring.tiny import build_tiny_cross_encoder

    catalog = validate_catalog(read_table(SAMPLE_DIR / "products.jsonl"), ContractConfig()).valid
    log = read_table(SAMPLE_DIR / "search_log.csv")
    pairs = log.merge(catalog[["product_id", "title", "text"]], on="product_id")
    pairs["label"] = pd.to_numeric(pairs["label"], errors="coerce").fillna(0.5).clip(0, 1)
    keep = pairs["product_id"].drop_duplicates().head(n_products)
    pairs = pairs[pairs["product_id"].isin(keep)].reset_index(drop=True)
    policy = policy or str(build_tiny_policy(catalog.head(200), work / "policy", TinyPolicyConfig(
        vocab_size=600, hidden_size=32, intermediate_size=64, num_heads=2, num_kv_heads=1, max_positions=256,
        max_prompt_tokens=64, max_summary_tokens=12, epochs=1, max_seconds=10, threads=1)))
    return pairs, policy, reward_model or str(build_tiny_cross_encoder(work / "ce", seed=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="Tiny policy and scorer, seconds (smoke test).")
    parser.add_argument("--pairs", default="", help="pairs.parquet (default: <RELSUM_HOME>/demo/pairs/"
                                                    "pairs.parquet from `relsum demo`).")
    parser.add_argument("--policy", default="", help="Policy folder or 'smollm2' (default: the demo's).")
    parser.add_argument("--reward-model", default="", help="Cross-encoder folder (default: the bootstrap "
                                                           "one).")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budget-cpu-min", type=float, default=24.0, help="CPU minutes per arm and seed.")
    parser.add_argument("--demo-budget-cpu-min", type=float, default=12.0,
                        help="The demo's training budget (12 GRPO updates): where the winner is read off.")
    parser.add_argument("--eval-every-cpu-min", type=float, default=4.0)
    parser.add_argument("--heldout-products", type=int, default=16)
    parser.add_argument("--heldout-samples", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.0, help="LoRA learning rate of every arm (0 = the "
                                                              "demo's, 1e-3 with --tiny).")
    parser.add_argument("--max-products", type=int, default=0, help="Use pairs of at most this many "
                                                                    "products (0 = all; --tiny: 16).")
    parser.add_argument("--sampling-products", type=int, default=64,
                        help="dpo and rft sample a seeded draw of this many products (rft: a new draw each "
                             "round, rounds until the budget ends) so their first step comes inside the "
                             "budget; 0 = every product first (the 2026-12-08 one-seed run).")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave as is).")
    parser.add_argument("--out", default="", help="Output folder (default: a temp folder).")
    parser.add_argument("--merge", nargs="+", default=[], metavar="DIR",
                        help="Train nothing: join the bench_algorithms.json of these output folders (runs "
                             "made in parallel, e.g. one process per core) into --out.")
    args = parser.parse_args()
    if args.merge:
        import json

        if not args.out:
            parser.error("--merge needs --out")
        write_report(merge_reports([json.loads((Path(d) / "bench_algorithms.json").read_text())
                                    for d in args.merge]), Path(args.out))
        return

    import torch

    from relsum.core import machine
    from relsum.core.config import load_config
    from relsum.core.paths import home
    from relsum.data.io import read_table
    from relsum.pipelines.configs import DemoConfig
    from relsum.pipelines.train import balance_labels, heldout_subset, split_by_product
    from relsum.policy.load import load_policy, prompt_cap
    from relsum.scoring.factory import make_scorer

    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine.describe())
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_algorithms_"))
    work.mkdir(parents=True, exist_ok=True)
    overrides = []
    if args.tiny:
        pairs, policy, reward_model = tiny_inputs(work / "tiny", args.max_products or 16,
                                                  args.policy, args.reward_model)
        overrides = ["train.trainer.policy.lora_r=4", "train.trainer.policy.lora_alpha=8",
                     "train.trainer.policy.max_summary_tokens=12",
                     "train.trainer.rft.generation_batch_size=8",
                     # a random tiny cross-encoder scores every text within ~1e-5: no margin is "real"
                     "train.trainer.dpo.min_reward_margin=0"]
        lr = args.lr or 1e-3
    else:
        from relsum.pipelines.reward_model import ensure_reward_model

        pairs = read_table(args.pairs or str(home() / "demo" / "pairs" / "pairs.parquet"))
        reward_model = ensure_reward_model(args.reward_model)
        policy = args.policy or DemoConfig().train.trainer.policy.model_dir
        lr = args.lr or DemoConfig().train.trainer.grpo.learning_rate
        if args.max_products:
            keep = pairs["product_id"].drop_duplicates().head(args.max_products)
            pairs = pairs[pairs["product_id"].isin(keep)].reset_index(drop=True)
    scorer = make_scorer(reward_model)
    runs, references, failures = [], {}, []
    for seed in args.seeds:
        base = load_config(DemoConfig, None, [f"train.trainer.policy.model_dir={policy}",
                                              f"train.trainer.seed={seed}", *overrides]).train
        train_df, heldout = split_by_product(pairs, base.holdout_fraction, seed)
        heldout = heldout_subset(heldout, args.heldout_products, seed)
        if base.balance_labels:
            train_df = balance_labels(train_df, seed)
        if heldout.empty:
            raise SystemExit(f"seed {seed}: no held-out products (raise --max-products)")
        for arm in args.arms:
            stage = load_config(DemoConfig, None, [f"train.trainer.policy.model_dir={policy}",
                                                   f"train.trainer.seed={seed}", *overrides,
                                                   *arm_overrides(arm, lr, args.sampling_products)]).train
            tc = stage.trainer
            tc.out_dir = str(work / arm / f"s{seed}")
            tc.policy.max_prompt_tokens = prompt_cap(tc.policy.model_dir, tc.policy.max_prompt_tokens)
            if seed not in references:  # the reference policy's point, shared by every arm of the seed
                evaluate = make_evaluator(heldout, tc.policy, scorer, args.heldout_samples,
                                          tc.grpo.temperature, seed)
                references[seed] = evaluate(*load_policy(tc.policy.model_dir))
            print(f"== {arm} seed {seed}: {len(train_df)} training pairs "
                  f"({train_df['product_id'].nunique()} products), {heldout['product_id'].nunique()} "
                  f"held-out products, budget {args.budget_cpu_min} CPU min", flush=True)
            try:
                run = run_arm(arm, seed, stage, train_df, heldout, scorer, args, references[seed])
            except ValueError as exc:  # e.g. no DPO pair or RFT sample left: recorded, the others still run
                print(f"   {arm} seed {seed}: FAILED: {exc}", flush=True)
                failures.append({"arm": arm, "seed": seed, "error": str(exc)})
                continue
            print(f"   {arm} seed {seed}: " + ", ".join(f"{p['cpu_min']:.2f} min {p['reward']:+.5f}"
                                                        for p in run["curve"]), flush=True)
            runs.append(run)
    report = {"machine": machine.summary(), "tiny": args.tiny, "budget_cpu_min": args.budget_cpu_min,
              "demo_budget_cpu_min": args.demo_budget_cpu_min, "heldout_samples": args.heldout_samples,
              "learning_rate": lr, "sampling_products": args.sampling_products,
              "arms": {a: arm_overrides(a, lr, args.sampling_products) for a in args.arms},
              "reference_reward": references, "runs": runs, "failures": failures}
    write_report(report, work)


SAME = ("budget_cpu_min", "demo_budget_cpu_min", "heldout_samples", "learning_rate", "sampling_products",
        "tiny")


def merge_reports(reports: list[dict]) -> dict:
    """One report from runs made in parallel (e.g. one process per core, each a share of the arms/seeds):
    the settings in ``SAME`` and each seed's reference reward must agree; runs and failures are joined."""
    first = reports[0]
    for other in reports[1:]:
        differ = [k for k in SAME if other.get(k) != first.get(k)]
        if differ:
            raise SystemExit(f"cannot merge runs with different settings: {differ}")
    references: dict = {}
    for report in reports:
        for seed, value in report["reference_reward"].items():
            if seed in references and abs(references[seed] - value) > 1e-6:
                raise SystemExit(f"seed {seed}: reference reward {value} != {references[seed]} "
                                 "(different held-out products or policy?)")
            references[seed] = value
    return {**{k: first.get(k) for k in ("machine", *SAME)},
            "arms": {a: o for r in reports for a, o in r["arms"].items()}, "reference_reward": references,
            "runs": [run for r in reports for run in r["runs"]],
            "failures": [f for r in reports for f in r["failures"]], "merged_from": len(reports)}


def write_report(report: dict, work: Path) -> None:
    """Summary, winner, ``bench_algorithms.json`` and ``.png`` in ``work``; a table printed."""
    from relsum.data.io import write_json_atomic

    runs = report["runs"]
    if not runs:
        raise SystemExit(f"every arm failed: {report['failures']}")
    demo_budget = report["demo_budget_cpu_min"]
    summary = summarize(runs, demo_budget, report["budget_cpu_min"])
    winner = max(summary, key=lambda a: summary[a]["gain_at_demo_budget_mean"])
    report = {**report, "summary": summary, "winner": winner}
    work.mkdir(parents=True, exist_ok=True)
    write_json_atomic(report, work / "bench_algorithms.json")
    plot(runs, demo_budget, work / "bench_algorithms.png")
    print("\narm          gain@demo-budget (mean; per seed)          gain@budget (mean)")
    for arm, s in summary.items():
        per = " ".join(f"{g:+.4f}" for g in s["gain_at_demo_budget"])
        print(f"{arm:<12} {s['gain_at_demo_budget_mean']:+.4f} ({per})   {s['gain_at_budget_mean']:+.4f}")
    print(f"winner at {demo_budget} CPU min: {winner}")
    print(f"wrote {work / 'bench_algorithms.json'} and {work / 'bench_algorithms.png'}")


if __name__ == "__main__":
    main()
