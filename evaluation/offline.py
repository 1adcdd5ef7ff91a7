"""The offline metrics table (paper's Table 3): R@90P and NDCG@5 gains over the ``none`` baseline.

:func:`compute_offline_metrics` turns a scored judgment table into a nested, JSON-able dict of
point estimates, paired bootstrap CIs and gains for the ``full`` golden set and its ``tail``
queries; :func:`gains_table` / :func:`format_table` render it. No I/O here (see ``report``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from relsum.evaluation.bootstrap import (
    Interval,
    paired_bootstrap,
    percentile_interval,
    resample_counts,
)
from relsum.evaluation.power import ALPHA, POWER, gain_findings, mde_note, paired_measures, paired_table
from relsum.metrics.names import metric_label, metrics_of, pair_metric_names, ranking_metrics
from relsum.metrics.ranking import mean_reward

logger = logging.getLogger(__name__)

SUBSETS = ("full", "tail")
#: Queries with fewer judged pairs are left out of NDCG (one judged product ranks first whatever the scores).
MIN_JUDGED = 2
REQUIRED_COLUMNS = ("query_id", "product_id", "label", "tail")



def ndcg_query_count(judgments: pd.DataFrame) -> int:
    """How many queries of ``judgments`` (``query_id``, ``label``) count for NDCG: a positive label and at
    least :data:`MIN_JUDGED` judged products (the rule :func:`compute_offline_metrics` applies)."""
    if judgments.empty:
        return 0
    by_query = judgments.groupby("query_id")["label"]
    return int(((by_query.max() > 0) & (by_query.size() >= MIN_JUDGED)).sum())


def metric_names(min_precision: float = 0.9, k: int = 5) -> dict[str, str]:
    """Display names of the metric keys, e.g. ``{"r@90p": "R@90P", "ndcg@5": "NDCG@5"}``."""
    return {name: metric_label(name) for name in ranking_metrics(k, min_precision)}


def _validate(scores: pd.DataFrame, candidates: list[str]) -> None:
    missing = [c for c in (*REQUIRED_COLUMNS, *(f"score_{c}" for c in candidates)) if c not in scores.columns]
    if missing:
        raise ValueError(f"scores lacks column(s) {missing}; has {list(scores.columns)}")
    null_ids = scores[["query_id", "product_id"]].isna().any(axis=1)
    if null_ids.any():
        raise ValueError(f"{int(null_ids.sum())} row(s) with a missing query_id or product_id")
    numeric = ["label", *(f"score_{c}" for c in candidates)]
    for col in numeric:
        values = pd.to_numeric(scores[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(values)
        if bad.any():
            raise ValueError(f"column {col!r} has {int(bad.sum())} missing/non-numeric/non-finite value(s)")
    if (scores["label"].astype(float) < 0).any():
        raise ValueError("label must be non-negative (gains 1 / 0.5 / 0)")
    dup = scores.duplicated(["query_id", "product_id"])
    if dup.any():
        raise ValueError(f"{int(dup.sum())} duplicate (query_id, product_id) pair(s)")
    tail_values = set(pd.unique(scores["tail"]))
    if not tail_values <= {True, False}:
        raise ValueError(f"column 'tail' must be boolean, found values {sorted(map(repr, tail_values))[:5]}")
    mixed = scores.groupby("query_id", sort=False)["tail"].nunique() > 1
    if mixed.any():
        raise ValueError(f"'tail' differs within {int(mixed.sum())} query(ies), "
                         f"e.g. {mixed[mixed].index[0]!r}")


def compute_offline_metrics(
    scores: pd.DataFrame,
    candidates: list[str],
    baseline: str = "none",
    k: int = 5,
    min_precision: float = 0.9,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """R@P and NDCG@k with paired bootstrap CIs and % gains over ``baseline``, full and tail.

    ``scores`` has one row per judged pair: ``query_id, product_id, label, tail`` and a
    ``score_<candidate>`` column per candidate. The baseline is added to ``candidates`` if
    missing. Returns ``{"config": {...}, "subsets": {"full"|"tail": {"n_queries", "n_pairs",
    "n_positive_pairs", "n_queries_ndcg", "n_queries_excluded_no_positive", "candidates":
    {name: {"r@90p": {"value", "lo", "hi"}, "ndcg@5": {...}, "gain_pct": {"r@90p": {...},
    "ndcg@5": {...}}}}}}}`` (metric names carry ``min_precision`` and ``k``:
    :mod:`relsum.metrics.names`) with plain Python types; values
    may be ``nan`` (empty subset, no positives, zero baseline) -- :func:`to_jsonable` maps
    those to ``None``. Queries without a positive gain are excluded from NDCG and counted
    (``n_queries_excluded_no_positive``), and so are queries with a single judged pair
    (``n_queries_excluded_single_judged``): their NDCG@k is 1 whatever the scores, so in a golden set
    of one judged product per query (ESCI-style exports) NDCG would read 1.000 and +0.0% for every
    candidate. R@P uses every pair.

    Each subset also carries :func:`relsum.evaluation.power.paired_measures`' keys: ``pairwise_accuracy``
    per candidate, ``n_comparable_pairs``, ``n_queries_pairwise`` and ``paired`` (every candidate's
    difference vs ``baseline`` per metric with its CI, minimum detectable effect and ``detectable``).
    """
    candidates = list(dict.fromkeys(candidates))
    metrics = ranking_metrics(k, min_precision)
    if baseline not in candidates:
        candidates.insert(0, baseline)
    _validate(scores, candidates)
    out: dict[str, Any] = {
        "config": {
            "candidates": candidates, "baseline": baseline, "k": int(k),
            "min_precision": float(min_precision),
            "n_boot": int(n_boot), "seed": int(seed), "level": float(level),
            "metric_names": metric_names(min_precision, k),
            "pair_metric_names": pair_metric_names(),
            "mde": {"power": POWER, "alpha": ALPHA, "test": "paired t (noncentral t), two-sided"},
        },
        "subsets": {},
    }
    for subset in SUBSETS:
        df = scores if subset == "full" else scores[scores["tail"].astype(bool)]
        labels = df["label"].to_numpy(dtype=np.float64)
        qids = df["query_id"].to_numpy()
        has_gain = pd.Series(labels > 0).groupby(qids).any() if len(df) else pd.Series(dtype=bool)
        single = ((pd.Series(qids).value_counts() < MIN_JUDGED).reindex(has_gain.index) if len(df)
                  else has_gain)
        result = paired_bootstrap(
            qids, labels, {c: df[f"score_{c}"].to_numpy(dtype=np.float64) for c in candidates},
            baseline=baseline, k=k, min_precision=min_precision, n_boot=n_boot, seed=seed, level=level,
            min_judged=MIN_JUDGED,
        )
        rewards = _reward_intervals(df, candidates, n_boot=n_boot, seed=seed, level=level)
        # pairwise accuracy, and every paired difference vs the baseline with its CI and MDE
        paired = paired_measures(df, candidates, baseline, result, k=k, min_judged=MIN_JUDGED,
                                 n_boot=n_boot, seed=seed, level=level)
        out["subsets"][subset] = {
            "n_queries": int(len(has_gain)),
            "n_pairs": int(len(df)),
            "n_positive_pairs": int((labels == 1.0).sum()),
            "n_queries_ndcg": int((has_gain & ~single).sum()),
            "n_queries_excluded_no_positive": int((~has_gain).sum()),
            "n_queries_excluded_single_judged": int((has_gain & single).sum()),
            "candidates": {
                c: {
                    **{m: r[m].as_dict() for m in metrics},
                    "reward": rewards[c].as_dict(),
                    "gain_pct": {m: r["gain_pct"][m].as_dict() for m in metrics},
                }
                for c, r in result.items()
            },
            **paired,
        }
        logger.info("offline metrics %s: %d queries, %d pairs", subset, len(has_gain), len(df))
    return out


def to_jsonable(obj: Any) -> Any:
    """A copy with only JSON types: numpy scalars/arrays unwrapped, nan/inf -> None, Path -> str."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    raise TypeError(f"not JSON-able: {type(obj).__name__}")


def as_float(x: Any) -> float:
    """A metric value as float, ``None`` (undefined after :func:`to_jsonable`) as nan."""
    return float("nan") if x is None else float(x)


def _signed(x: float, digits: int = 1) -> str:
    """``+3.1`` / ``−0.5`` (typographic minus, as in the paper's table)."""
    text = f"{abs(x):.{digits}f}"
    return ("−" if x < 0 and text.strip("0.") else "+") + text


def format_gain(iv: Mapping[str, Any]) -> str:
    """``"+3.1% [−0.5, +6.8]"``; ``"n/a"`` when the gain is undefined."""
    value, lo, hi = (as_float(iv.get(key)) for key in ("value", "lo", "hi"))
    if math.isnan(value):
        return "n/a"
    ci = "n/a" if math.isnan(lo) or math.isnan(hi) else f"{_signed(lo)}, {_signed(hi)}"
    return f"{_signed(value)}% [{ci}]"


def format_value(iv: Mapping[str, Any], digits: int = 3) -> str:
    """``"0.412 [0.398, 0.427]"``; ``"n/a"`` when undefined."""
    value, lo, hi = (as_float(iv.get(key)) for key in ("value", "lo", "hi"))
    if math.isnan(value):
        return "n/a"
    ci = "n/a" if math.isnan(lo) or math.isnan(hi) else f"{lo:.{digits}f}, {hi:.{digits}f}"
    return f"{value:.{digits}f} [{ci}]"


def _reward_intervals(df: pd.DataFrame, candidates: list[str], *, n_boot: int, seed: int,
                      level: float) -> dict[str, Interval]:
    """:func:`mean_reward` per candidate with a bootstrap CI over queries (pairs weighted equally)."""
    codes, uniques = pd.factorize(df["query_id"]) if len(df) else (np.zeros(0, dtype=np.int64), [])
    counts = resample_counts(len(uniques), n_boot, seed)
    n_per_query = np.bincount(codes, minlength=len(uniques)).astype(np.float64)
    labels = df["label"].to_numpy(dtype=np.float64)
    out = {}
    for c in candidates:
        scores = df[f"score_{c}"].to_numpy(dtype=np.float64)
        per_query = np.bincount(codes, weights=-np.abs(scores - labels), minlength=len(uniques))
        with np.errstate(invalid="ignore", divide="ignore"):
            replicates = (counts @ per_query) / (counts @ n_per_query)
        out[c] = Interval(mean_reward(labels, scores), *percentile_interval(replicates, level))
    return out


def ndcg_note(metrics: Mapping[str, Any]) -> str | None:
    """A warning when queries with a single judged product were left out of NDCG; None when none were.

    Such a query's NDCG@k is 1 whatever the scores. When they are most of the judged queries (ESCI-style
    exports judge one product per query) NDCG says little or nothing and the table leads with R@P.
    """
    labels, full = metrics["config"]["metric_names"], metrics["subsets"]["full"]
    r_at_p, ndcg = (labels[m] for m in metrics_of(metrics["config"]))
    single = full.get("n_queries_excluded_single_judged", 0)
    if not single:
        return None
    used = full["n_queries_ndcg"]
    verdict = (f"{ndcg} is undefined on this set; read {r_at_p}" if used == 0
               else f"{ndcg} rests on {used} queries only; read {r_at_p} first"
               if leads_with_recall(metrics) else f"{ndcg} uses the other {used}")
    return (f"{single} of {full['n_queries']} queries have a single judged product and are left out of "
            f"{ndcg} (its value there is 1 whatever the scores): {verdict}.")


def leads_with_recall(metrics: Mapping[str, Any]) -> bool:
    """True when most queries with a positive label have a single judged product (NDCG says little)."""
    full = metrics["subsets"]["full"]
    return full.get("n_queries_excluded_single_judged", 0) >= max(full["n_queries_ndcg"], 1)


def coverage_text(cov: Mapping[str, Any] | None) -> str:
    """``"98.3% (118/120)"``: share of judged golden products a summaries file has a row for."""
    if not cov or "judged_products" not in cov:
        return "–"
    n, k = cov["judged_products"], cov["products_with_summary"]
    return f"{100 * k / n:.1f}% ({k}/{n})" if n else "n/a (0 judged products)"


def gains_table(metrics: Mapping[str, Any], detectable: bool = False) -> pd.DataFrame:
    """Table 3: one row per non-baseline candidate, gain in % [95% CI] per subset and metric.

    Summary candidates also get their coverage of the judged golden products (a summary missing for a
    product scores it title only, which pulls the gain towards 0). Columns lead with R@P when most
    queries have a single judged product (:func:`leads_with_recall`). ``detectable=True`` (what the
    printed table and the report show) marks with † every gain below what the set can detect and adds a
    ``detectable`` column with each gain's minimum detectable effect (:mod:`relsum.evaluation.power`).
    """
    cfg, names = metrics["config"], metrics["config"]["metric_names"]
    rows = [c for c in cfg["candidates"] if c != cfg["baseline"]]
    ranking = metrics_of(cfg)
    order = [(s, m) for m in ranking for s in SUBSETS] if leads_with_recall(metrics) else \
        [(s, m) for s in SUBSETS for m in ranking]
    data = {
        f"Golden-{subset} {names[m]}": [
            format_gain(metrics["subsets"][subset]["candidates"][c]["gain_pct"][m]) for c in rows
        ]
        for subset, m in order
    }
    if detectable and all("paired" in metrics["subsets"][s] for s in SUBSETS):
        findings = [gain_findings(metrics, c, order) for c in rows]
        for j, (subset, m) in enumerate(order):
            data[f"Golden-{subset} {names[m]}"] = [
                cell if cell == "n/a" or flags[j] else f"{cell} †"
                for cell, (flags, _) in zip(data[f"Golden-{subset} {names[m]}"], findings, strict=True)]
        data["detectable"] = [text for _, text in findings]
    coverage = metrics.get("summary_coverage") or {}
    if coverage:
        data["summary coverage"] = [coverage_text(coverage.get(c)) for c in rows]
    return pd.DataFrame(data, index=pd.Index(rows, name="candidate"))


def absolute_table(metrics: Mapping[str, Any], candidates: list[str] | None = None) -> pd.DataFrame:
    """Absolute values [95% CI] and counts, one row per (subset, candidate)."""
    cfg, names = metrics["config"], metrics["config"]["metric_names"]
    records = []
    for subset in SUBSETS:
        sub = metrics["subsets"][subset]
        for c in candidates or cfg["candidates"]:
            rec = {"subset": f"Golden-{subset}", "candidate": c}
            rec.update({names[m]: format_value(sub["candidates"][c][m]) for m in metrics_of(cfg)})
            if "reward" in sub["candidates"][c]:
                rec["reward −|r−l|"] = format_value(sub["candidates"][c]["reward"])
            if c in sub.get("pairwise_accuracy", {}):
                rec[cfg["pair_metric_names"]["pairwise_accuracy"]] = format_value(sub["pairwise_accuracy"][c])
            rec.update({
                "queries": sub["n_queries"], "pairs": sub["n_pairs"],
                "label-1 pairs": sub["n_positive_pairs"],
                "excluded (no positive)": sub["n_queries_excluded_no_positive"],
                "excluded (single judged)": sub.get("n_queries_excluded_single_judged", 0),
            })
            records.append(rec)
    return pd.DataFrame.from_records(records).set_index(["subset", "candidate"])


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub-style markdown table of ``df`` with its index (no ``tabulate`` dependency)."""
    idx_names = [n or "" for n in df.index.names]
    header = [*idx_names, *map(str, df.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for idx, row in zip(df.index, df.itertuples(index=False), strict=True):
        cells = [*(idx if isinstance(idx, tuple) else (idx,)), *row]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def format_table(metrics: Mapping[str, Any]) -> str:
    """Terminal/markdown text: the gains table and every candidate's absolute values with counts.

    Absolute values are printed for all candidates because a gain is undefined (n/a) wherever the
    baseline's metric is 0, e.g. an R@90P of 0 when no threshold reaches 90% precision.
    """
    cfg = metrics["config"]
    level = round(100 * cfg["level"])
    note = ndcg_note(metrics)
    return (
        (f"Note: {note}\n\n" if note else "")
        + f"Gain over `{cfg['baseline']}` in % [{level}% paired bootstrap CI over queries, "
        f"n_boot={cfg['n_boot']}]\n\n{to_markdown(gains_table(metrics, detectable=True))}\n\n"
        + (f"Paired difference vs `{cfg['baseline']}` [{level}% CI]; MDE at "
           f"{100 * cfg['mde']['power']:g}% power; q = queries\n\n{to_markdown(paired_table(metrics))}"
           f"\n\n{mde_note(metrics)}\n\n" if "mde" in cfg else "")
        + f"Absolute values [{level}% CI]\n\n"
        f"{to_markdown(absolute_table(metrics))}\n"
    )
