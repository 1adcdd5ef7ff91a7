"""Scorer throughput vs plain ``sentence_transformers.CrossEncoder.predict`` on the same pairs, one process.

    python benchmarks/bench_scorer.py [--model DIR] [--n N] [--data DIR]

Both sides use the same model weights (the scorer's, copied into the CrossEncoder, so a headless
model gets the same random head), the same max_length, fp32, the same torch threads and batch_size
32; sentence-transformers 6.2 ``predict`` already sorts by length, so the scorer's gains come from
token-budget batching, less padding, dedupe and its cache. Two workloads, each printed as a ratio:

(a) cold: N judged (query, product) pairs as title-only and title+text docs, no duplicates, empty cache;
(b) realistic evaluation: per judged pair r(q, t), r(q, [t; d]) and r(q, t) again (the title-only
    baseline is needed once per candidate), and the whole evaluation run twice (a repeated
    evaluation); the scorer starts with an empty cache.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from _timing import timed  # noqa: E402


def load_judged(golden_dir: Path, n: int, seed: int = 0) -> pd.DataFrame:
    """N judged pairs (query, title, text) of a golden-layout folder (its catalog found as relsum does)."""
    from relsum.data.golden import load_golden

    golden = load_golden(golden_dir)
    df = golden.judgments.merge(golden.queries[["query_id", "query"]], on="query_id").merge(
        golden.catalog[["product_id", "title", "text"]], on="product_id")
    return df.sample(n=min(n, len(df)), random_state=seed).reset_index(drop=True)


def default_data_dir() -> Path:
    from relsum.core.paths import SAMPLE_DIR

    return SAMPLE_DIR / "golden"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="", help="local model folder (default: bundled MiniLM)")
    parser.add_argument("--n", type=int, default=150, help="judged pairs to sample (each gives 2 docs)")
    parser.add_argument("--data", default="", help="golden-layout folder (default: the bundled golden split)")
    parser.add_argument("--max-length", type=int, default=256)
    args = parser.parse_args()

    import torch
    from sentence_transformers import CrossEncoder

    from relsum.core.paths import minilm_dir
    from relsum.scoring.config import ScorerConfig
    from relsum.scoring.factory import make_scorer
    from relsum.scoring.scorer import join_title_text

    model_dir = Path(args.model) if args.model else minilm_dir()
    judged = load_judged(Path(args.data) if args.data else default_data_dir(), args.n)
    title_only = [(q, t) for q, t in zip(judged["query"], judged["title"], strict=True)]
    with_text = [(q, join_title_text(t, x))
                 for q, t, x in zip(judged["query"], judged["title"], judged["text"], strict=True)]
    cold = list(dict.fromkeys(title_only + with_text))
    one_eval = [p for trio in zip(title_only, with_text, title_only, strict=True) for p in trio]

    cfg = ScorerConfig(max_length=args.max_length)
    scorer = make_scorer(model_dir, cfg)
    ce = CrossEncoder(str(model_dir), num_labels=1, max_length=args.max_length, device="cpu",
                      local_files_only=True, trust_remote_code=False)
    ce.model.load_state_dict(scorer.model.state_dict())  # identical weights, incl. a random head
    ce.model.float().eval()
    tok = scorer.tokenizer([q for q, _ in cold], [d for _, d in cold], truncation=True,
                           max_length=args.max_length)
    lens = np.array([len(x) for x in tok["input_ids"]])
    from relsum.core import machine

    print(machine.describe())
    print(f"model {model_dir} | threads {torch.get_num_threads()} | max_length {args.max_length} | "
          f"{len(cold)} unique pairs, tokens median {int(np.median(lens))} max {lens.max()}")

    warm = cold[:8]  # first-call overheads out of the timings
    ce.predict(warm, batch_size=32, show_progress_bar=False)
    scorer.score_pairs(warm)
    scorer.clear_cache()

    ce_cold, t_ce_cold = timed(ce.predict, cold, batch_size=32, show_progress_bar=False)
    sc_cold, t_sc_cold = timed(scorer.score_pairs, cold)
    diff = float(np.abs(np.asarray(ce_cold) - sc_cold).max())
    print(f"(a) cold, {len(cold)} pairs: CrossEncoder.predict {len(cold) / t_ce_cold:.1f} pairs/s, "
          f"scorer {len(cold) / t_sc_cold:.1f} pairs/s -> ratio {t_ce_cold / t_sc_cold:.2f}x "
          f"(max |diff| {diff:.1e})")

    scorer.clear_cache()
    n_work = 2 * len(one_eval)
    t_ce_work = sum(timed(ce.predict, one_eval, batch_size=32, show_progress_bar=False)[1] for _ in range(2))
    t_sc_work = sum(timed(scorer.score_pairs, one_eval)[1] for _ in range(2))
    info = scorer.cache_info()
    print(f"(b) evaluation with repeats, {n_work} pairs ({info.misses} distinct): CrossEncoder.predict "
          f"{n_work / t_ce_work:.1f} pairs/s, scorer {n_work / t_sc_work:.1f} pairs/s -> ratio "
          f"{t_ce_work / t_sc_work:.2f}x")


if __name__ == "__main__":
    main()
