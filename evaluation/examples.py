"""Side-by-side examples for the offline report: what the trained summaries changed, not only by how much.

For a seeded handful of golden queries (half tail, half head when both exist) and a few of each query's
judged products (label-1 first, then the rest, so a reader sees both what should rise and what should
fall), the section shows each product's title, its label, and for two candidates (e.g. ``sum_ref`` and
``grpo``) the summary with the score r(q,[t;s]) the scorer gave it, and the change in score. A table
alone says NDCG@5 moved by 0.01; these rows show whether it moved because summaries name the queried
attribute or because they all became the same template.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)


def pick_queries(queries: pd.DataFrame, judged: set[str], n: int, seed: int = 0) -> list[str]:
    """``n`` judged query ids, seeded, alternating tail and head so both subsets are shown."""
    rng = np.random.default_rng(seed)
    pool = queries[queries["query_id"].isin(judged)].sort_values("query_id")
    tail = list(rng.permutation(pool.loc[pool["tail"].astype(bool), "query_id"].to_numpy()))
    head = list(rng.permutation(pool.loc[~pool["tail"].astype(bool), "query_id"].to_numpy()))
    picked: list[str] = []
    while len(picked) < n and (tail or head):
        for side in (tail, head):
            if side and len(picked) < n:
                picked.append(str(side.pop(0)))
    return picked


def _cell(text: Any) -> str:
    """Markdown-table-safe text (pipes escaped, one line)."""
    return " ".join(str(text if text is not None else "").split()).replace("|", "\\|")


def examples_section(golden: Any, summaries: dict[str, pd.Series], scorer: Any, candidates: tuple[str, str],
                     n_queries: int = 5, per_query: int = 4, seed: int = 0) -> str:
    """Markdown for ``evaluate.run(extra_sections={"Examples": ...})``.

    ``golden``: a :class:`~relsum.data.golden.GoldenSet`; ``summaries``: candidate -> (product_id -> summary);
    ``candidates``: the two names compared (before, after). Scores come from ``scorer`` (its cache makes
    them free after the evaluation has scored the same triples).
    """
    before, after = candidates
    missing = [c for c in candidates if c not in summaries]
    if missing:
        raise ValueError(f"examples need summaries for {missing}")
    judged = set(golden.judgments["product_id"]) & set(golden.catalog["product_id"])
    judgments = golden.judgments[golden.judgments["product_id"].isin(judged)]
    qids = pick_queries(golden.queries, set(judgments["query_id"]), n_queries, seed)
    titles = golden.catalog.drop_duplicates("product_id").set_index("product_id")["title"]
    query_text = golden.queries.set_index("query_id")["query"]
    tails = golden.queries.set_index("query_id")["tail"].astype(bool)
    rng = np.random.default_rng(seed)
    rows = []
    for qid in qids:
        cands = judgments[judgments["query_id"] == qid].sort_values("product_id")
        cands = cands.assign(_r=rng.random(len(cands))).sort_values(["label", "_r"], ascending=[False, True])
        for _, row in cands.head(per_query).iterrows():
            rows.append({"query_id": qid, "query": query_text[qid], "tail": bool(tails[qid]),
                         "product_id": row["product_id"], "title": titles[row["product_id"]],
                         "label": row["label"]})
    if not rows:
        return "No judged golden query to show."
    frame = pd.DataFrame(rows)
    for name in candidates:
        frame[name] = frame["product_id"].map(summaries[name]).fillna("").astype(str)
        frame[f"score_{name}"] = np.asarray(scorer.score(frame["query"].tolist(), frame["title"].tolist(),
                                                         [s or None for s in frame[name]]), dtype=np.float64)
    lines = [f"{len(qids)} golden queries (seed {seed}; tail and head alternate), up "
             f"to {per_query} judged products "
             "each, label-1 first. Score = r(q,[t;s]) from the reward model; an empty "
             f"summary is scored as the title alone. Change = {after} - {before}.", ""]
    for qid, group in frame.groupby("query_id", sort=False):
        first = group.iloc[0]
        lines += [f"**Query {_cell(qid)}: \"{_cell(first['query'])}\"** "
                  f"({'tail' if first['tail'] else 'head'})", "",
                  f"| product title | label | {before} summary | score | {after} summary | score | change |",
                  "|---|---|---|---|---|---|---|"]
        for _, r in group.iterrows():
            change = r[f"score_{after}"] - r[f"score_{before}"]
            lines.append(f"| {_cell(r['title'])} | {r['label']:g} | {_cell(r[before]) or '(title only)'} | "
                         f"{r[f'score_{before}']:.3f} | {_cell(r[after]) or '(title only)'} | "
                         f"{r[f'score_{after}']:.3f} | {change:+.3f} |")
        lines.append("")
    return "\n".join(lines).rstrip()
