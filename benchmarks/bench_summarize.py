"""Summarization throughput: batched vs per-item generation, and Ray Data vs in-process, on 2 cores.

Run: ``python benchmarks/bench_summarize.py [--n 200] [--max-new-tokens 48] [--per-item-n 200] [--no-ray]``.

All in one process on the same products of the bundled catalog, with the tiny default policy built
locally (``build_tiny_policy``, short warm-up; the random tiny Mistral of the tests is the fallback):

1. batched: ``generate_summaries`` (length-sorted batches, left padding) over all products;
2. per-item: the same prompts, ``model.generate`` one product at a time (what a naive loop does);
3. Ray: ``RayBackend`` (2 actors x 1 thread, local Ray with 2 CPUs) vs ``HFBackend`` (2 torch threads),
   wall time including actor start-up and policy loading, which Ray pays per dataset execution.

Products/s and generated tokens/s (tokens of the completions, EOS excluded) are printed with ratios.
Greedy outputs of batched and per-item runs are compared and the agreement printed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from relsum.core.paths import SAMPLE_DIR  # noqa: E402
from relsum.data.contracts import validate_catalog  # noqa: E402
from relsum.policy.generate import generate_summaries, postprocess  # noqa: E402
from relsum.policy.load import load_policy  # noqa: E402
from relsum.policy.prompt import build_prompt, fit_text  # noqa: E402
from relsum.summarize.backends import GenSettings, HFBackend, make_backend  # noqa: E402


def build_policy(catalog: pd.DataFrame, out: Path) -> Path:
    from relsum.policy.config import TinyPolicyConfig
    from relsum.policy.tiny import build_tiny_policy

    return build_tiny_policy(catalog, out, TinyPolicyConfig(epochs=1, max_seconds=30.0, max_products=400))


def count_tokens(tok, texts: list[str]) -> int:
    return sum(len(ids) for ids in tok([t for t in texts if t],
                                       add_special_tokens=False)["input_ids"]) if any(texts) else 0


def per_item(model, tok, titles, texts, max_new_tokens: int, max_prompt_tokens: int) -> list[str]:
    out = []
    with torch.inference_mode():
        for title, text in zip(titles, texts, strict=True):
            if not text:
                out.append("")
                continue
            enc = tok(build_prompt(title, fit_text(tok, title, text, max_prompt_tokens)), return_tensors="pt")
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id,
                                 eos_token_id=tok.eos_token_id, temperature=None, top_p=None, top_k=None)
            out.append(postprocess(tok.decode(gen[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--per-item-n", type=int, default=200, help="products for the per-item loop (<= n)")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--max-prompt-tokens", type=int, default=256)
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    from relsum.core import machine

    print(machine.describe())
    full = validate_catalog(pd.read_json(SAMPLE_DIR / "products.jsonl", lines=True)).valid
    sample = full[full["text"] != ""].head(args.n)
    titles, texts = list(sample["title"]), list(sample["text"])
    work = Path(tempfile.mkdtemp(prefix="bench-summarize-"))
    t = time.perf_counter()
    policy = build_policy(full, work / "policy")
    print(f"tiny policy built in {time.perf_counter() - t:.1f}s; {len(titles)} products, "
          f"max_new_tokens={args.max_new_tokens}, torch threads={torch.get_num_threads()}")
    model, tok = load_policy(policy)
    kw = {"max_new_tokens": args.max_new_tokens, "max_prompt_tokens": args.max_prompt_tokens}

    t = time.perf_counter()
    batched = generate_summaries(model, tok, titles, texts, batch_size=args.batch_size, show_progress=False,
                                 **kw)
    tb = time.perf_counter() - t
    nb, tokb = len(titles), count_tokens(tok, batched)
    m = min(args.per_item_n, len(titles))
    t = time.perf_counter()
    single = per_item(model, tok, titles[:m], texts[:m], args.max_new_tokens, args.max_prompt_tokens)
    ts = time.perf_counter() - t
    toks = count_tokens(tok, single)
    agree = sum(a == b for a, b in zip(batched[:m], single, strict=True)) / m
    print(f"batched  (bs={args.batch_size}): {nb / tb:8.2f} products/s {tokb / tb:9.1f} tokens/s "
          f"({tb:.1f}s, {nb} products)", flush=True)
    print(f"per-item           : {m / ts:8.2f} products/s {toks / ts:9.1f} tokens/s "
          f"({ts:.1f}s, {m} products)", flush=True)
    print(f"ratio batched/per-item: {(nb / tb) / (m / ts):.1f}x "
          f"products/s, {(tokb / tb) / (toks / ts):.1f}x tokens/s; "
          f"greedy outputs identical for {agree:.0%} of products")

    if args.no_ray:
        return
    settings = GenSettings(str(policy), max_new_tokens=args.max_new_tokens,
                           max_prompt_tokens=args.max_prompt_tokens,
                           batch_size=args.batch_size, threads=2)
    t = time.perf_counter()
    hf = HFBackend(settings).summarize(titles, texts)
    th = time.perf_counter() - t
    ray_settings = GenSettings(**{**vars(settings), "threads": 1})
    t = time.perf_counter()
    backend = make_backend("ray", ray_settings, num_actors=2, batch_size=max(1, len(titles) // 8), num_cpus=2)
    t_init = time.perf_counter() - t
    t = time.perf_counter()
    rs = backend.summarize(titles, texts)
    tr = time.perf_counter() - t
    t = time.perf_counter()
    backend.summarize(titles, texts)
    tr2 = time.perf_counter() - t
    backend.close()
    same = sum(a == b for a, b in zip(hf, rs, strict=True)) / len(hf)
    print(f"in-process hf (2 threads, incl. load): {len(hf) / th:8.2f} products/s ({th:.1f}s)", flush=True)
    print(f"ray (2 actors x 1 thread): ray.init {t_init:.1f}s; 1st run {tr:.1f}s "
          f"({len(rs) / tr:.2f} products/s), "
          f"2nd run {tr2:.1f}s ({len(rs) / tr2:.2f} products/s), both incl. actor start + policy load")
    print(f"ratio ray/in-process (2nd run): {(len(rs) / tr2) / (len(hf) / th):.2f}x; outputs "
          f"identical for {same:.0%}", flush=True)


if __name__ == "__main__":
    main()
