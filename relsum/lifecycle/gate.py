"""Deployment gate (in the spirit of Doc2Query--): serve a summary only where it does not hurt.

For each product with a summary, compare on held-out queries (queries not used to train the policy)
the relevance the scorer gives with the summary, r(q,[t;s]), against title only, r(q,t). The summary
is kept when

* ``rule="mean"`` (default): the mean over the product's held-out queries of r(q,[t;s]) - r(q,t) is
  >= -margin. One summary serves every query of its product, so the product-level average effect is
  what deployment changes; a single noisy query should not veto a summary that helps the rest.
* ``rule="all"``: every held-out query satisfies r(q,[t;s]) >= r(q,t) - margin (stricter).

Otherwise the product falls back to title only (empty summary). Products with a summary but no
held-out query are kept or dropped by ``keep_unjudged`` and counted separately. Coverage is the
fraction of summarized products that keep their summary.

Only relevance moves here (the gate does not look at labels): the question is whether appending s
changes the ranker's view of the product for queries people actually issue, and Doc2Query-- showed
that pruning expansions the ranker finds irrelevant helps more than it hurts. Labels are not needed,
so the gate can run on fresh search-log queries.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
import pandas as pd

from relsum.lifecycle.config import SummaryGateConfig

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class SummaryGateResult:
    summaries: pd.Series  # product_id -> summary after the gate ("" = title only)
    decisions: pd.DataFrame  # product_id, n_queries, mean_diff, min_diff, keep, reason
    coverage: float  # kept / products that had a non-empty summary
    stats: dict[str, Any]


def gate_summaries(pairs: pd.DataFrame, summaries: pd.Series, scorer: Any,
                   config: SummaryGateConfig | None = None) -> SummaryGateResult:
    """Apply the gate. ``pairs``: held-out (query, product_id, title) rows; ``summaries``: product_id ->
    summary."""
    config = config or SummaryGateConfig()
    missing = {"query", "product_id", "title"} - set(pairs.columns)
    if missing:
        raise ValueError(f"gate pairs lack columns {sorted(missing)}")
    if summaries.index.duplicated().any():
        raise ValueError("summaries has duplicate product ids")
    from relsum.policy.served import served_summary

    # the served form (a no-op on generated summaries): the gate decides on the string that would be served
    title_of = pairs.drop_duplicates("product_id").set_index("product_id")["title"]
    summ = pd.Series([served_summary(s, title=title_of.get(p))
                      for p, s in summaries.fillna("").astype(str).items()],
                     index=summaries.index, dtype=object)
    with_summary = summ[summ.str.strip() != ""]
    rows = pairs[pairs["product_id"].isin(with_summary.index)].reset_index(drop=True)
    diff = np.zeros(len(rows))
    if len(rows):
        queries, titles = rows["query"].astype(str).tolist(), rows["title"].astype(str).tolist()
        r_title = np.asarray(scorer.score(queries, titles), dtype=np.float64)
        r_sum = np.asarray(scorer.score(queries, titles, rows["product_id"].map(with_summary).tolist()),
                           dtype=np.float64)
        diff = r_sum - r_title
    per = (pd.DataFrame({"product_id": rows["product_id"], "diff": diff})
           .groupby("product_id", sort=False)["diff"]
           .agg(n_queries="size", mean_diff="mean", min_diff="min"))
    # reindex, not merge: an empty ``per`` (no held-out query for any product) has an untyped index
    decisions = per.reindex(pd.Index(with_summary.index, name="product_id")).reset_index()
    decisions["n_queries"] = decisions["n_queries"].fillna(0).astype(int)
    judged = decisions["n_queries"] > 0
    stat = decisions["mean_diff"] if config.rule == "mean" else decisions["min_diff"]
    passes = judged & (stat >= -config.margin)
    decisions["keep"] = passes | (~judged & config.keep_unjudged)
    decisions["reason"] = np.where(~judged, "no held-out query",
                                   np.where(passes, "helps or neutral", "hurts"))
    kept = set(decisions.loc[decisions["keep"], "product_id"])
    gated = summ.where(summ.index.isin(kept), "")
    n = len(decisions)
    coverage = float(decisions["keep"].mean()) if n else float("nan")
    stats = {"products_with_summary": n, "kept": int(decisions["keep"].sum()), "coverage": coverage,
             "no_heldout_query": int((~judged).sum()), "hurts": int((judged & ~passes).sum()),
             "margin": config.margin, "rule": config.rule}
    logger.info("gate: kept %d of %d summaries (coverage "
                "%.3f, rule %s, margin %g)", stats["kept"], n, coverage,
                config.rule, config.margin)
    return SummaryGateResult(summaries=gated, decisions=decisions.reset_index(drop=True), coverage=coverage,
                             stats=stats)


def gate_section(results: dict[str, SummaryGateResult]) -> str:
    """Markdown for ``evaluation.report.write_report(extra_sections={"Deployment gate": ...})``."""
    lines = ["A summary is served only where, on held-out queries, r(q,[t;s]) >= r(q,t) - margin "
             "(otherwise title only).", "",
             "| candidate | coverage | kept | with summary | hurts | no held-out query | rule | margin |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        s = r.stats
        cov = "n/a" if np.isnan(s["coverage"]) else f"{100 * s['coverage']:.1f}%"
        lines.append(f"| {name} | {cov} | {s['kept']} | {s['products_with_summary']} | {s['hurts']} | "
                     f"{s['no_heldout_query']} | {s['rule']} | {s['margin']:g} |")
    return "\n".join(lines)
