"""How much of a GRPO step the reward takes (target <= 25%).

Run: ``python benchmarks/bench_grpo_reward.py [--steps 10] [--reward-model DIR] [--policy DIR]``.

Trains a few real TRL GRPO steps (G=4, 8 completions per step) of the tiny policy against the one
scorer (the bundled MiniLM by default, or the bootstrap reward model if given) on pairs from the bundled
search log, and prints the reward's share of the training wall time as measured by the reward function
itself (one batched scorer call per step).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="GRPO optimizer steps to time.")
    parser.add_argument("--reward-model", default="", help="Cross-encoder folder (default: bundled MiniLM).")
    parser.add_argument("--policy", default="", help="Policy folder (default: build a tiny one, ~1-2 min).")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="Summary token budget.")
    args = parser.parse_args()

    import pandas as pd

    from relsum.core import machine
    from relsum.core.config import load_config
    from relsum.core.paths import SAMPLE_DIR, minilm_dir
    from relsum.data.config import ContractConfig
    from relsum.data.contracts import validate_catalog
    from relsum.data.io import read_table
    from relsum.policy.config import TinyPolicyConfig
    from relsum.policy.tiny import build_tiny_policy
    from relsum.scoring.factory import make_scorer
    from relsum.training.config import TrainConfig
    from relsum.training.grpo import train_grpo

    print(machine.describe())
    work = Path(tempfile.mkdtemp(prefix="bench_grpo_"))
    catalog = validate_catalog(read_table(SAMPLE_DIR / "products.jsonl"), ContractConfig()).valid
    policy = args.policy or str(build_tiny_policy(catalog, work / "policy", TinyPolicyConfig(max_seconds=60)))
    log = read_table(SAMPLE_DIR / "search_log.csv")
    pairs = log.merge(catalog[["product_id", "title", "text"]], on="product_id")
    pairs["label"] = pd.to_numeric(pairs["label"], errors="coerce").fillna(0.5)
    scorer = make_scorer(args.reward_model or str(minilm_dir()))
    config = load_config(TrainConfig, None, [
        f"out_dir={work / 'train'}", f"policy.model_dir={policy}", f"grpo.max_steps={args.steps}",
        f"policy.max_summary_tokens={args.max_new_tokens}", "grpo.per_device_train_batch_size=8",
        "grpo.gradient_accumulation_steps=1", "grpo.learning_rate=1e-3", f"max_train_rows={8 * args.steps}"])
    start = time.perf_counter()
    result = train_grpo(config, pairs, scorer)
    wall = time.perf_counter() - start
    print(f"\nGRPO steps: {result['steps']}  seconds/step: {result['seconds_per_step']:.2f}  "
          f"(wall incl. model load {wall:.1f} s)")
    print(f"reward: {result['reward_calls']} calls, {result['reward_seconds']:.2f} s = "
          f"{100 * result['reward_fraction']:.1f}% of training time (target <= 25%)")


if __name__ == "__main__":
    main()
