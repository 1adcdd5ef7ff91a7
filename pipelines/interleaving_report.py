"""How an interleaving analysis is shown: the per-query wins-minus-losses plot and the Markdown report.

Rendering only: these two writers show the results that :mod:`relsum.pipelines.interleaving` computed
(atomically, like every output), so the stage module holds the export and the statistics.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from relsum.data import io as rio


def plot_wins_per_query(per_query: pd.DataFrame, overall: dict, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    data = per_query[per_query["impressions"] > 0].sort_values("wins_minus_losses", ascending=False)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    x = range(len(data))
    colors = ["tab:green" if v > 0 else "tab:red" if v < 0 else "tab:gray" for v in data["wins_minus_losses"]]
    ax.bar(x, data["wins_minus_losses"], color=colors)
    ax.axhline(0, color="black", linewidth=0.8)
    if len(data) <= 30:
        ax.set_xticks(list(x), data["query_id"].astype(str), rotation=60, ha="right", fontsize=7)
    else:
        ax.set_xticks([])
    ax.set_xlabel(f"query ({len(data)} with impressions), sorted")
    ax.set_ylabel("variation wins - control wins")
    labels = ["variation\nwins", "ties", "control\nwins", "no\npreference"]
    values = [overall["wins"], overall["ties"], overall["losses"], overall["no_preference"]]
    ax2.bar(labels, values, color=["tab:green", "tab:gray", "tab:red", "lightgray"])
    ax2.set_ylabel("impressions")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with rio.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write_interleaving_report(results: dict, path: Path) -> None:

    o = results["overall"]
    fmt = lambda v, spec: "n/a" if v is None else format(v, spec)  # noqa: E731
    lines = [f"# Interleaving test {results['experiment_id']}", "",
             f"**{results['verdict']}** (counted events: {', '.join(results['count_events'])})", "",
             "| impressions | variation wins | control wins | ties | no preference | Δ | Δ_AB "
             "(Chapelle) | p (sign test) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |",
             f"| {o['impressions']} | {o['wins']} | {o['losses']} | {o['ties']} | {o['no_preference']} | "
             f"{fmt(o['delta'], '+.3f')} | {fmt(o['delta_chapelle'], '+.3f')} "
             f"| {fmt(o['p_value'], '.3g')} |", "",
             f"Queries: {results['queries']} "
             f"exported, {results['queries_with_impressions']} with impressions. "
             f"Events: {results['events_in']} in, {results['events_counted']} counted, "
             f"{results['events_rejected']} "
             f"rejected (rejects.csv).", "", f"Conventions: {results['conventions']}", "",
             "![per-query wins minus losses](interleaving.png)", ""]
    with rio.atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines), encoding="utf-8")
