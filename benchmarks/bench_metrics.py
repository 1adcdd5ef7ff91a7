"""Offline metrics on a golden-set-sized table: 133k judged pairs over ~10k queries.

Run: ``python benchmarks/bench_metrics.py [--n-queries 10000] [--n-boot 1000]``.

Prints the wall time of the point estimates (R@90P, mean NDCG@5), of the bootstrap replicates,
and of the whole ``compute_offline_metrics`` (3 candidates, full + tail, with bootstrap), and
the speed ratio against a naive pandas ``groupby.apply`` + ``sklearn.metrics.ndcg_score`` per
query (and sklearn ``precision_recall_curve`` for R@90P), measured in the same process. The
naive results are checked to agree with the vectorised ones before any ratio is printed.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd
from sklearn.metrics import ndcg_score, precision_recall_curve

from relsum.evaluation.bootstrap import ndcg_replicates, recall_at_precision_replicates, resample_counts
from relsum.evaluation.offline import compute_offline_metrics, format_table
from relsum.metrics.ranking import mean_ndcg_at_k, per_query_ndcg_at_k, recall_at_precision


def make_scores(n_queries: int, seed: int = 0) -> pd.DataFrame:
    """~13.3 judged pairs per query, labels 1 / 0.5 / 0, scores rounded to 3 decimals (ties)."""
    rng = np.random.default_rng(seed)
    sizes = 1 + rng.binomial(24, 12.3 / 24, n_queries)  # 1..25 pairs, mean 13.3
    q = np.repeat(np.arange(n_queries), sizes)
    labels = rng.choice([0.0, 0.5, 1.0], size=len(q), p=[0.45, 0.2, 0.35])
    df = pd.DataFrame({
        "query_id": np.char.add("q", q.astype(str)), "product_id": np.arange(len(q)), "label": labels,
        "tail": np.repeat(rng.random(n_queries) < 0.3, sizes),
    })
    for name, w in (("none", 0.5), ("desc", 0.6), ("relsum", 0.65)):
        df[f"score_{name}"] = np.round(1 / (1 + np.exp(-(4 * w * labels + rng.normal(-1.5, 1.0, len(q))))), 3)
    return df


def best_of(fn, repeat: int = 3) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def naive_mean_ndcg(df: pd.DataFrame, col: str, k: int = 5) -> float:
    def one(g: pd.DataFrame) -> float:
        y, s = g["label"].to_numpy(), g[col].to_numpy()
        if not (y > 0).any():
            return np.nan
        if len(y) == 1:  # sklearn refuses single-document queries; one positive is a perfect ranking
            return 1.0
        return ndcg_score(y[None], s[None], k=k)

    return float(df.groupby("query_id")[["label", col]].apply(one).mean())


def naive_r_at_90p(df: pd.DataFrame, col: str) -> float:
    precision, recall, _ = precision_recall_curve(df["label"].to_numpy() == 1.0, df[col].to_numpy())
    return float(recall[precision >= 0.9].max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-queries", type=int, default=10_000)
    ap.add_argument("--n-boot", type=int, default=1000)
    args = ap.parse_args()

    from relsum.core import machine

    print(machine.describe())
    df = make_scores(args.n_queries)
    y, s, qids = df["label"].to_numpy(), df["score_relsum"].to_numpy(), df["query_id"].to_numpy()
    print(f"data: {len(df)} pairs, {df['query_id'].nunique()} "
          f"queries, {df['score_relsum'].nunique()} distinct "
          f"scores, labels {df['label'].value_counts().sort_index().to_dict()}; cpus={os.cpu_count()}")

    t_rap, rap = best_of(lambda: recall_at_precision(y, s, 0.9))
    t_ndcg, ndcg = best_of(lambda: mean_ndcg_at_k(qids, y, s, 5))
    print(f"R@90P point estimate        : {t_rap * 1e3:8.1f} ms  (value {rap:.4f})")
    print(f"mean NDCG@5 point estimate  : {t_ndcg * 1e3:8.1f} ms  (value {ndcg.mean:.4f}, "
          f"{ndcg.n_queries} queries, {ndcg.n_excluded} excluded)")
    print(f"both point estimates        : {(t_rap + t_ndcg) * 1e3:8.1f} ms  (target < 1000 ms)")

    uq, qcode = np.unique(qids, return_inverse=True)
    t_counts, counts = best_of(lambda: resample_counts(len(uq), args.n_boot, 0), repeat=1)
    _, per_q = per_query_ndcg_at_k(qcode, y, s, 5)
    t_brap, _ = best_of(lambda: recall_at_precision_replicates(qcode, y, s, counts, 0.9), repeat=1)
    t_bndcg, _ = best_of(lambda: ndcg_replicates(per_q, counts), repeat=1)
    print(f"bootstrap ({args.n_boot} resamples)  : draw {t_counts:.2f} s, R@90P {t_brap:.2f} s, "
          f"NDCG@5 {t_bndcg:.2f} s per candidate")

    t_full, metrics = best_of(lambda: compute_offline_metrics(
        df, ["none", "desc", "relsum"], n_boot=args.n_boot), repeat=1)
    print(f"compute_offline_metrics     : {t_full:8.2f} s  (3 candidates x full+tail, n_boot={args.n_boot})")

    t_naive_ndcg, naive_ndcg = best_of(lambda: naive_mean_ndcg(df, "score_relsum"), repeat=1)
    t_naive_rap, naive_rap = best_of(lambda: naive_r_at_90p(df, "score_relsum"))
    assert np.isclose(naive_ndcg, ndcg.mean, rtol=1e-10), (naive_ndcg, ndcg.mean)
    assert naive_rap == rap, (naive_rap, rap)
    print(f"naive groupby-apply + sklearn ndcg_score: {t_naive_ndcg:8.2f} s  -> vectorised is "
          f"{t_naive_ndcg / t_ndcg:,.0f}x faster (same value {naive_ndcg:.6f})")
    print(f"sklearn precision_recall_curve R@90P    : {t_naive_rap * 1e3:8.1f} ms -> ratio "
          f"{t_naive_rap / t_rap:.2f}x (same value)")
    print()
    print(format_table(metrics))


if __name__ == "__main__":
    main()
