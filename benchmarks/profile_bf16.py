"""Where the bf16 scoring path spends its time: fp32 vs autocast vs bf16 casts vs packed bf16, with a profile.

    python benchmarks/profile_bf16.py [--model DIR] [--n 100] [--repeats 3] [--top 12]

Runs the scorer's own batches (its tokenization, length sort and token-budget packing) of mixed-length
golden pairs through four variants of the same model, interleaved, best of ``--repeats``:
``fp32`` (reference), ``autocast`` (the old bf16 path), ``bf16-cast`` (model cast to bf16 once, plain
``F.linear``) and ``bf16-packed`` (the current path: :func:`relsum.scoring.bf16.bf16_model`). Then the
top ops of a ``torch.profiler`` run of each, so a slow variant shows which op eats the time
(``aten::copy_`` = per-call casts, ``aten::addmm`` = matmuls incl. oneDNN weight reorders).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def scorer_batches(scorer, pairs):
    """Exactly the feature batches :meth:`Scorer.compute` builds for ``pairs`` (as torch tensors)."""
    import torch

    return [{k: torch.from_numpy(v) for k, v in feats.items()} for _, feats in scorer.feature_batches(pairs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="", help="cross-encoder folder (default: bundled MiniLM)")
    parser.add_argument("--n", type=int, default=100, help="golden pairs (each gives "
                                                           "title-only and title|text)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--top", type=int, default=12, help="profile rows per variant (0 = no profile)")
    args = parser.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    from relsum.core import machine
    from relsum.core.paths import minilm_dir
    from relsum.scoring import fidelity
    from relsum.scoring.bf16 import bf16_model, packing_available
    from relsum.scoring.config import ScorerConfig
    from relsum.scoring.scorer import Scorer

    print(machine.describe())
    model_dir = args.model or str(minilm_dir())
    sample = fidelity.calibration_set().sample(n=args.n, random_state=0)
    titles = [d.split(" | ", 1)[0] for d in sample["doc"]]
    pairs = list(dict.fromkeys(list(zip(sample["query"], titles, strict=True))
                               + list(zip(sample["query"], sample["doc"], strict=True))))
    scorer = Scorer(model_dir, ScorerConfig(cache=False))
    batches = scorer_batches(scorer, pairs)
    print(f"model {model_dir} | {len(pairs)} pairs in {len(batches)} batches | oneDNN bf16 packing "
          f"{'available' if packing_available() else 'NOT available'}")
    fp32 = scorer.model
    models = {"fp32": (fp32, False), "autocast": (fp32, True),
              "bf16-cast": (copy.deepcopy(fp32).to(torch.bfloat16), False),
              "bf16-packed": (bf16_model(fp32), False)}

    def run(name):
        model, autocast = models[name]
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
        with torch.inference_mode(), ctx:
            return torch.cat([model(**b).logits.float() for b in batches])

    ref = run("fp32")
    times = {name: [] for name in models}
    for name in models:
        run(name)
    for _ in range(args.repeats):
        for name in models:  # interleaved: load on a shared machine hits every variant alike
            start = time.perf_counter()
            run(name)
            times[name].append(time.perf_counter() - start)
    base = min(times["fp32"])
    for name in models:
        best = min(times[name])
        diff = float((run(name) - ref).abs().max())
        print(f"{name:<12} {1e3 * best:9.1f} ms  {len(pairs) / best:7.1f} pairs/s  {base / best:5.2f}x fp32  "
              f"max |logit - fp32| {diff:.4f}")
    if not args.top:
        return
    for name in models:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run(name)
        print(f"--- profile: {name}")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))


if __name__ == "__main__":
    main()
