"""Peak resident memory (RSS) per demo stage: the figure that decides whether the demo fits a laptop.

Run: ``python benchmarks/bench_memory.py [--mode real|tiny] [--steps 2] [--heldout 16] [--golden 64]
[--reward-model DIR|minilm|bootstrap] [--set key=value ...]``.

Runs ``relsum demo`` in this process (its ``lap()`` records each stage's peak with
:class:`relsum.core.memory.PeakRss`, the kernel's exact peak mark, reset per stage), at the demo's per-batch
settings but fewer updates and golden products: the peak of a stage is set by its largest batch, not by
how many batches it runs, so a short run shows the full demo's peaks (the seconds do not transfer) as long
as the batches are as large as the demo's: 16 held-out products (x 4 samples) and >= 64 golden products
(the greedy batch), the defaults here. See docs/memory.md.

- ``real``: SmolLM2-135M-Instruct (converted from its GGUF into a fresh home first: the ``convert`` row)
  and, as reward model, the bundled MiniLM folder by default (same architecture and size as the
  bootstrapped one; ``--reward-model bootstrap`` trains it as the demo does, a few minutes).
- ``tiny``: the tiny policy and the tiny random cross-encoder, built locally (what the test suite runs).

Prints the machine line (CPU flags), then one row per stage: peak RSS MB, RSS at its start, seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def small_golden(out: Path, n_queries: int, n_train_queries: int) -> tuple[Path, Path]:
    """A golden folder of the first ``n_queries`` bundled queries and a search log of ``n_train_queries``."""
    import pandas as pd

    from relsum.core.paths import SAMPLE_DIR

    golden = out / "golden"
    golden.mkdir(parents=True)
    queries = pd.read_csv(SAMPLE_DIR / "golden" / "queries.csv", dtype=str).head(n_queries)
    judgments = pd.read_csv(SAMPLE_DIR / "golden" / "judgments.csv", dtype=str)
    queries.to_csv(golden / "queries.csv", index=False)
    judgments[judgments.query_id.isin(queries.query_id)].to_csv(golden / "judgments.csv", index=False)
    (golden / "relsum.yaml").write_text((SAMPLE_DIR / "golden" / "relsum.yaml").read_text())
    (golden / "products.jsonl").write_text((SAMPLE_DIR / "products.jsonl").read_text())
    log = pd.read_csv(SAMPLE_DIR / "search_log.csv", dtype=str)
    log = log[log.query_id.isin(log.query_id.drop_duplicates().head(n_train_queries))]
    log.to_csv(out / "search_log.csv", index=False)
    return golden, out / "search_log.csv"


def tiny_overrides(work: Path) -> list[str]:
    from relsum.core.paths import SAMPLE_DIR
    from relsum.data.config import ContractConfig
    from relsum.data.contracts import validate_catalog
    from relsum.data.io import read_table
    from relsum.policy.config import TinyPolicyConfig
    from relsum.policy.tiny import build_tiny_policy
    from relsum.scoring.tiny import build_tiny_cross_encoder

    catalog = validate_catalog(read_table(SAMPLE_DIR / "products.jsonl"), ContractConfig()).valid
    cfg = TinyPolicyConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4,
                           num_kv_heads=2, max_positions=512, max_prompt_tokens=128, max_summary_tokens=24,
                           epochs=1, batch_size=8, learning_rate=4e-3, max_seconds=0, seed=0)
    policy = build_tiny_policy(catalog.head(100), work / "tiny_policy", cfg)
    golden, log = small_golden(work / "sample", 3, 3)
    return [f"reward_model={build_tiny_cross_encoder(work / 'tiny_ce', seed=0)}", f"golden={golden}",
            f"pairs.search_log={log}", "pairs.filter.top_fraction=1.0",
            f"train.trainer.policy.model_dir={policy}", "train.trainer.policy.max_summary_tokens=8",
            "train.heldout_samples=2", "n_boot=20", "train.n_boot=20", "examples=1"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=("real", "tiny"), default="real")
    ap.add_argument("--steps", type=int, default=2, help="GRPO updates (demo: 12, 6 in fp32)")
    ap.add_argument("--heldout", type=int, default=16, help="held-out products (demo: 16, 10 in fp32)")
    ap.add_argument("--golden", type=int, default=64, help="golden products (demo: 160, 96 in fp32)")
    ap.add_argument("--train-queries", type=int, default=12,
                    help="real mode: search-log queries to build pairs from (0 = all 45; scoring them all "
                         "takes minutes and does not raise the peak)")
    ap.add_argument("--reward-model", default="minilm", help="folder, minilm or bootstrap (real mode)")
    ap.add_argument("--set", action="append", default=[], help="extra demo override key=value")
    ap.add_argument("--home", default="", help="RELSUM_HOME to use (default: a fresh one, so the SmolLM2 "
                                              "conversion and MLflow's start are measured too)")
    ap.add_argument("--json", default="", help="also write the figures to this file")
    args = ap.parse_args()
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")  # the demo's laps

    from relsum.core import machine
    from relsum.core.config import load_config
    from relsum.core.memory import PeakRss, current_rss_mb
    from relsum.pipelines.configs import DemoConfig

    print(machine.describe())
    work = Path(tempfile.mkdtemp(prefix="bench_memory_"))
    os.environ["RELSUM_HOME"] = args.home or str(work / "home")
    rows: dict[str, dict] = {}
    overrides = [f"out_dir={work / 'demo'}", f"train.trainer.grpo.max_steps={args.steps}",
                 f"train.max_heldout_products={args.heldout}", f"golden_products={args.golden}",
                 "size=configured"]
    if args.mode == "tiny":
        overrides += tiny_overrides(work)
    else:
        from relsum.core.paths import minilm_dir
        from relsum.policy.gguf import smollm2_dir

        start, t = current_rss_mb(), time.perf_counter()
        with PeakRss() as m:
            smollm2_dir()
        rows["convert"] = {"peak_mb": m.peak_mb, "start_mb": start, "seconds": time.perf_counter() - t}
        if args.train_queries:
            _, log = small_golden(work / "sample", 1, args.train_queries)
            overrides.append(f"pairs.search_log={log}")
        if args.reward_model != "bootstrap":
            rm = minilm_dir() if args.reward_model == "minilm" else args.reward_model
            overrides.append(f"reward_model={rm}")
    from relsum.pipelines.demo import run

    result = run(load_config(DemoConfig, None, [*overrides, *args.set]))
    for stage, peak in result["peak_rss_mb"].items():
        rows[stage] = {"peak_mb": peak, "seconds": result["timings"][stage]}
    print(f"{'stage':<14}{'peak RSS MB':>12}{'start MB':>10}{'seconds':>9}")
    for stage, row in rows.items():
        start_mb = f"{row['start_mb']:.0f}" if "start_mb" in row else "-"
        print(f"{stage:<14}{row['peak_mb']:>12.0f}{start_mb:>10}{row['seconds']:>9.1f}")
    print(f"max peak RSS MB {max(r['peak_mb'] for r in rows.values()):.0f} ({args.mode} mode, {args.steps} "
          f"updates, {args.heldout} held-out, {args.golden} golden products)")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine.summary(), "stages": rows}, indent=2))


if __name__ == "__main__":
    main()
