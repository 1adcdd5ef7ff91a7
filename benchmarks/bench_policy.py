"""SmolLM2 as the policy on this CPU: GRPO seconds per step and generation products/s, fp32 against bf16;
optionally, the prompt variants' mean reward on train-split pairs (how ``prompt: auto`` was chosen).

Run: ``python benchmarks/bench_policy.py [--policy smollm2] [--steps 2] [--prompts 2] [--products 16]
[--dtypes fp32,bf16] [--samples 4] [--select-prompts 40 --reward-model DIR]``.

GRPO: ``--prompts`` prompts x G=4 completions per step, ``--max-new-tokens`` (48) new tokens, prompts cut
to ``--prompt-tokens`` (256); the first step is a warm-up and is not counted. Generation: greedy, batch 8,
``--products`` products. The reward is the bundled MiniLM folder unless ``--reward-model`` is given (its
speed, not its quality, matters for timing). Prompt selection: one labelled search-log pair (train-split
queries only) per product for a seeded sample of products, greedy summaries under each variant, mean
reward -|r(q,[t;s]) - l| with a paired bootstrap interval for the difference. bf16 is timed even on CPUs
without native bf16 (there it is emulated and slow; ``policy.dtype: auto`` would not pick it). Wall times
depend on what else runs; CPU-seconds of this process (also printed) are steadier on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _pairs(n_products: int, seed: int):
    """One labelled train-split search-log pair per product, seeded sample (catalog text as the summarizer
    reads it)."""
    import pandas as pd

    from relsum.core.paths import SAMPLE_DIR
    from relsum.data.config import ContractConfig
    from relsum.data.contracts import validate_catalog
    from relsum.data.io import read_table

    catalog = validate_catalog(read_table(SAMPLE_DIR / "products.jsonl"), ContractConfig()).valid
    log = read_table(SAMPLE_DIR / "search_log.csv")
    log["label"] = pd.to_numeric(log["label"], errors="coerce")
    pairs = log.dropna(subset=["label"]).merge(catalog[["product_id", "title", "text"]], on="product_id")
    pairs = pairs[pairs["text"].str.strip() != ""].sample(frac=1.0, random_state=seed)
    return pairs.drop_duplicates("product_id").head(n_products).reset_index(drop=True)


def bench_generation(policy: str, dtype: str, pairs, prompt_tokens: int,
                     new_tokens: int) -> tuple[float, float]:
    """(products per wall second, products per CPU second of this process)."""
    from relsum.policy.generate import generate_summaries
    from relsum.policy.load import load_policy

    model, tok = load_policy(policy, dtype=dtype)
    args = {"max_new_tokens": new_tokens, "batch_size": 8, "max_prompt_tokens": prompt_tokens}
    generate_summaries(model, tok, pairs["title"][:2].tolist(), pairs["text"][:2].tolist(), **args)  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    generate_summaries(model, tok, pairs["title"].tolist(), pairs["text"].tolist(), **args)
    return len(pairs) / (time.perf_counter() - wall), len(pairs) / (time.process_time() - cpu)


def bench_sampling(policy: str, dtype: str, pairs, prompt_tokens: int, new_tokens: int, k: int) -> dict:
    """k sampled summaries per product (the held-out comparison's expected reward, DPO's pairs): each prompt
    computed once and shared by its k copies (ours) against ``generate(num_return_sequences=k)``, which
    computes it k times. Products per wall second for each, same seed, same batches."""
    from relsum.policy.generate import generate_summaries
    from relsum.policy.load import load_policy

    model, tok = load_policy(policy, dtype=dtype)
    args = {"max_new_tokens": new_tokens, "batch_size": 8, "max_prompt_tokens": prompt_tokens,
            "do_sample": True, "num_return_sequences": k, "seed": 0}
    titles, texts = pairs["title"].tolist(), pairs["text"].tolist()
    generate_summaries(model, tok, titles[:2], texts[:2], **args)  # warm-up
    # each way twice, interleaved, best of two: steadier on a machine other jobs share
    best = {"generate": float("inf"), "shared": float("inf")}
    for _ in range(2):
        for name, share in (("generate", False), ("shared", True)):
            wall = time.perf_counter()
            generate_summaries(model, tok, titles, texts, share_prefill=share, **args)
            best[name] = min(best[name], time.perf_counter() - wall)
    return best


def bench_grpo(policy: str, dtype: str, pairs, scorer, args) -> dict:
    from relsum.core.config import load_config
    from relsum.training.config import TrainConfig
    from relsum.training.grpo import train_grpo

    g = 4
    config = load_config(TrainConfig, None, [
        f"out_dir={tempfile.mkdtemp(prefix='bench_policy_')}", f"policy.model_dir={policy}",
        f"policy.dtype={dtype}", f"policy.max_summary_tokens={args.max_new_tokens}",
        f"policy.max_prompt_tokens={args.prompt_tokens}", f"grpo.max_steps={args.steps + 1}",
        f"grpo.per_device_train_batch_size={g * args.prompts}", "grpo.gradient_accumulation_steps=1",
        f"max_train_rows={args.prompts * (args.steps + 1)}", "grpo.logging_steps=1"])
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self):
            self.ends = []

        def on_step_end(self, *a, **k):
            self.ends.append((time.perf_counter(), time.process_time()))

    clock = StepClock()
    result = train_grpo(config, pairs, scorer, callbacks=[clock])
    pairs_ = list(zip(clock.ends, clock.ends[1:], strict=False))  # the first step warms up
    n = max(len(pairs_), 1)
    wall = sum(b[0] - a[0] for a, b in pairs_)
    return {"seconds_per_step": wall / n, "cpu_seconds_per_step": sum(b[1] - a[1] for a, b in pairs_) / n,
            "first_step": result["train_seconds"] - wall, "reward_fraction": result["reward_fraction"]}


def select_prompts(policy: str, pairs, scorer, variants: list[str], prompt_tokens: int, new_tokens: int,
                   dtype: str):
    import numpy as np

    from relsum.policy.generate import generate_summaries
    from relsum.policy.load import load_policy
    from relsum.policy.reward import relevance_rewards

    model, tok = load_policy(policy, dtype=dtype)
    rewards, examples = {}, {}
    for v in variants:
        start = time.perf_counter()
        sums = generate_summaries(model, tok, pairs["title"].tolist(), pairs["text"].tolist(), batch_size=8,
                                  max_new_tokens=new_tokens, max_prompt_tokens=prompt_tokens, prompt=v)
        rewards[v] = relevance_rewards(scorer, pairs["query"].tolist(), pairs["title"].tolist(), sums,
                                       pairs["label"].tolist())
        examples[v] = sums[:3]
        empty = sum(not s for s in sums)
        print(f"  prompt {v:17s} mean reward {rewards[v].mean():+.4f}  empty summaries {empty}/{len(sums)}  "
              f"({time.perf_counter() - start:.0f} s)")
    rng = np.random.default_rng(0)
    base = variants[0]
    for v in variants[1:]:
        d = rewards[v] - rewards[base]
        boot = [d[rng.integers(0, len(d), len(d))].mean() for _ in range(2000)]
        print(f"  {v} - {base}: {d.mean():+.4f} "
              f"[{np.percentile(boot, 2.5):+.4f}, {np.percentile(boot, 97.5):+.4f}]")
    for v in variants:
        print(f"  examples {v}: {examples[v]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default="smollm2", help="policy folder or keyword (default smollm2)")
    parser.add_argument("--dtypes", default="fp32,bf16", help="precisions to time")
    parser.add_argument("--steps", type=int, default=2, help="timed GRPO steps (after one warm-up step)")
    parser.add_argument("--prompts", type=int, default=2, help="prompts per GRPO step (x 4 completions)")
    parser.add_argument("--products", type=int, default=16, help="products for the generation timing")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--reward-model", default="", help="cross-encoder folder (default: bundled MiniLM)")
    parser.add_argument("--select-prompts", type=int, default=0, help="products for the prompt "
                                                                      "comparison (0 = skip)")
    parser.add_argument("--variants", default="paper,one_line,one_line_started")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--samples", type=int, default=0, help="also time k sampled summaries per product, "
                                                               "shared prompt prefill against generate's "
                                                               "own (0 = skip; the held-out comparison "
                                                               "uses 4)")
    args = parser.parse_args()

    import torch

    from relsum.core.machine import describe
    from relsum.core.paths import minilm_dir
    from relsum.policy.load import resolve_model_dir
    from relsum.scoring.factory import make_scorer

    print(describe())
    policy = str(resolve_model_dir(args.policy))
    scorer = make_scorer(args.reward_model or str(minilm_dir()))
    if not args.skip_timing:
        pairs = _pairs(max(args.products, args.prompts * (args.steps + 1)), seed=0)
        for dtype in args.dtypes.split(","):
            gen, gen_cpu = bench_generation(policy, dtype, pairs.head(args.products), args.prompt_tokens,
                                            args.max_new_tokens)
            print(f"{dtype}: generation {gen:.2f} products/s wall, {gen_cpu:.2f} per "
                  f"CPU-second (greedy, batch 8, "
                  f"{args.products} products, <= {args.prompt_tokens}-token prompts, "
                  f"<= {args.max_new_tokens} new "
                  f"tokens; load average {os.getloadavg()[0]:.1f})", flush=True)
            if args.samples > 1:
                t = bench_sampling(policy, dtype, pairs.head(args.products), args.prompt_tokens,
                                   args.max_new_tokens, args.samples)
                print(f"{dtype}: {args.samples} samples per product: shared prefill "
                      f"{args.products / t['shared']:.2f} products/s, generate(num_return_sequences) "
                      f"{args.products / t['generate']:.2f} products/s: {t['generate'] / t['shared']:.2f}x "
                      f"(best of 2 each, batch 8; load average {os.getloadavg()[0]:.1f})", flush=True)
            if args.steps > 0:
                grpo = bench_grpo(policy, dtype, pairs, scorer, args)
                print(f"{dtype}: GRPO {grpo['seconds_per_step']:.1f} s/step "
                      f"wall, {grpo['cpu_seconds_per_step']:.1f} "
                      f"CPU-s/step ({args.prompts} prompts x 4 completions; first "
                      f"step {grpo['first_step']:.1f} s; "
                      f"reward {100 * grpo['reward_fraction']:.0f}% of training; torch threads "
                      f"{torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f})", flush=True)
    import resource

    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.1f} GB")
    if args.select_prompts:
        dtype = args.dtypes.split(",")[-1]
        print(f"prompt selection: {args.select_prompts} train-split products, greedy, {dtype}, reward model "
              f"{args.reward_model or 'MiniLM (untrained head: timing only)'}")
        select_prompts(policy, _pairs(args.select_prompts, seed=1), scorer, args.variants.split(","),
                       args.prompt_tokens, args.max_new_tokens, dtype)


if __name__ == "__main__":
    main()
