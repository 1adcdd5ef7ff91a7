"""Stages: export team-draft interleaved lists for an online test, and analyse its logged events.

``run_export`` ranks each query's candidates twice with the one cross-encoder, on the title alone
r(q, t) (control) and on title + summary r(q, [t; s]) (variation), interleaves the two rankings with
seeded team draft and writes ``interleaved.parquet`` / ``interleaved.jsonl`` for the serving system.
``run_analyze`` joins the logged events back to those lists and reports which ranker users preferred.
Conventions (credit, ties, no-preference impressions) are in :mod:`relsum.online.interleaving`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from relsum.core.errors import InputError
from relsum.core.output_files import OutputFiles
from relsum.data import contracts as dc
from relsum.data import io as rio
from relsum.data.contracts import as_id
from relsum.online import interleaving as il
from relsum.online.export import read_export
from relsum.pipelines.configs import AnalyzeConfig, ExportConfig
from relsum.pipelines.interleaving_report import plot_wins_per_query, write_interleaving_report
from relsum.scoring.protocol import RelevanceScorer

logger = logging.getLogger(__name__)

EXPORT_COLUMNS = ["experiment_id", "query_id", "query", "position", "product_id", "team",
                  "control_rank", "variation_rank"]


@dataclasses.dataclass(frozen=True)
class ExportPaths(OutputFiles):
    """The files one export writes (all in ``out_dir``)."""

    parquet: str = "interleaved.parquet"
    jsonl: str = "interleaved.jsonl"
    rejects: str = "rejects.csv"
    manifest: str = "export_manifest.json"


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What :func:`run_export` returns: ``export_manifest.json``'s content and the files."""

    manifest: dict[str, Any]
    paths: ExportPaths

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class AnalyzePaths(OutputFiles):
    """The files one analysis writes (all in ``out_dir``)."""

    results: str = "interleaving_results.json"
    per_query: str = "per_query.csv"
    impressions: str = "impressions.parquet"
    rejects: str = "rejects.csv"
    plot: str = "interleaving.png"
    report: str = "interleaving_report.md"


@dataclasses.dataclass(frozen=True)
class AnalyzeResult:
    """What :func:`run_analyze` returns: ``interleaving_results.json``'s content (``overall``, ``verdict``,
    event counts, conventions) and the files."""

    results: dict[str, Any]
    paths: AnalyzePaths

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _require(name: str, df: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"{name}: missing required column(s) {missing}; found {list(df.columns)}")


def _reason_counts(reasons: dict[int, list[str]]) -> dict[str, int]:
    return dict(sorted(Counter(r.split(":")[0] for rs in reasons.values() for r in rs).items()))


def _load_catalog(path: str) -> tuple[pd.Series, dict[str, str], int]:
    """product_id -> clean title, product_id -> reason for catalog rejects, and the reject count."""
    result = dc.validate_catalog(rio.read_table(path))
    rejected = {}
    for pid, reason in zip(result.rejects.get("product_id", []), result.rejects.get("reason", []),
                           strict=False):
        if as_id(pid) is not None:
            rejected.setdefault(as_id(pid), reason)
    return result.valid.set_index("product_id")["title"], rejected, len(result.rejects)


def _validate_candidates(cands: pd.DataFrame, titles: pd.Series,
                         catalog_rejects: dict[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Valid (query_id, query, product_id) rows and rejects; nothing is dropped without a reason."""
    reasons: dict[int, list[str]] = {}
    first_query: dict[str, tuple[str, int]] = {}
    seen: dict[tuple[str, str], int] = {}
    keep = []
    for i, (q_raw, text, p_raw) in enumerate(zip(cands["query_id"], cands["query"], cands["product_id"],
                                                 strict=True)):
        qid, pid = as_id(q_raw), as_id(p_raw)
        query = "" if text is None or (isinstance(text, float) and text != text) else str(text).strip()
        problems = [f"{dc.R_MISSING_KEY}: {col}" for col, v in (("query_id", qid), ("product_id", pid))
                    if v is None]
        if not query:
            problems.append(dc.R_EMPTY_QUERY)
        if pid is not None and pid not in titles.index:
            why = catalog_rejects.get(pid)
            problems.append(f"{dc.R_UNKNOWN_PRODUCT}: " + (f"rejected by the catalog contract ({why})" if why
                                                        else "not in the catalog"))
        if not problems:
            if qid in first_query and first_query[qid][0] != query:
                problems.append(f"{dc.R_CONFLICT_QUERY}: query_id {qid!r} has {first_query[qid][0]!r} at row "
                                f"{first_query[qid][1]}")
            elif (qid, pid) in seen:
                problems.append(f"{dc.R_DUPLICATE}: ({qid!r}, {pid!r}) first at row {seen[(qid, pid)]}")
        if problems:
            reasons[i] = problems
            continue
        first_query.setdefault(qid, (query, i))
        seen[(qid, pid)] = i
        keep.append((qid, query, pid))
    valid = pd.DataFrame(keep, columns=["query_id", "query", "product_id"])
    return valid, il.rejects_frame(cands, reasons)


def run_export(config: ExportConfig, scorer: RelevanceScorer | None = None) -> ExportResult:
    """Write one interleaved list per query (Parquet + JSONL), ``rejects.csv`` and
    ``export_manifest.json``."""
    from relsum.scoring.factory import make_scorer

    from .evaluate import load_summaries
    from .reward_model import ensure_reward_model

    cands = rio.read_table(config.candidates).reset_index(drop=True)
    _require(f"candidates {config.candidates}", cands, ["query_id", "query", "product_id"])
    titles, catalog_rejects, n_catalog_rejects = _load_catalog(config.catalog)
    summaries = load_summaries(config.summaries)
    summaries.index = [as_id(p) for p in summaries.index]
    valid, rejects = _validate_candidates(cands, titles, catalog_rejects)
    if len(rejects):
        logger.warning("%d of %d candidate rows rejected (see rejects.csv): %s", len(rejects), len(cands),
                       rejects["reason"].str.split(":").str[0].value_counts().to_dict())
    if scorer is None:
        scorer = make_scorer(ensure_reward_model(config.reward_model), config.scorer)
    valid["title"] = valid["product_id"].map(titles)
    summary = valid["product_id"].map(summaries).fillna("").astype(str).str.strip()
    queries, ts = valid["query"].tolist(), valid["title"].tolist()
    valid["control_score"] = scorer.score(queries, ts) if len(valid) else []
    valid["variation_score"] = scorer.score(queries, ts, [s or None for s in summary]) if len(valid) else []

    rows, lists, first_pick, identical = [], [], Counter(), 0
    for qid, group in valid.groupby("query_id", sort=False):
        ids = group["product_id"].tolist()
        control = il.rank_by_scores(ids, group["control_score"].to_numpy())
        variation = il.rank_by_scores(ids, group["variation_score"].to_numpy())
        identical += control[:config.length] == variation[:config.length]
        c_rank = {p: r for r, p in enumerate(control, 1)}
        v_rank = {p: r for r, p in enumerate(variation, 1)}
        items = il.team_draft_interleave(control, variation, rng=il.query_rng(config.seed, qid),
                                         length=config.length)
        first_pick[items[0][1]] += 1
        query = group["query"].iloc[0]
        for pos, (pid, team) in enumerate(items, 1):
            rows.append((config.experiment_id, qid, query, pos, pid, team, c_rank[pid], v_rank[pid]))
        lists.append({"experiment_id": config.experiment_id, "query_id": qid, "query": query,
                      "items": [{"position": pos, "product_id": pid, "team": team}
                                for pos, (pid, team) in enumerate(items, 1)]})
    frame = pd.DataFrame(rows, columns=EXPORT_COLUMNS).astype(
        {"position": "int64", "control_rank": "int64", "variation_rank": "int64"})

    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = ExportPaths.under(out)
    rio.write_parquet_atomic(frame, Path(paths.parquet))
    with rio.atomic_path(Path(paths.jsonl)) as tmp:
        tmp.write_text("".join(json.dumps(obj, ensure_ascii=False) + "\n" for obj in lists), encoding="utf-8")
    rio.write_csv_atomic(rejects, Path(paths.rejects))
    manifest = {
        "experiment_id": config.experiment_id, "seed": config.seed, "length": config.length,
        "inputs": {"candidates": config.candidates, "catalog": config.catalog, "summaries": config.summaries},
        "candidate_rows": len(cands), "valid_candidate_rows": len(valid),
        "rejected_candidate_rows": len(rejects),
        "reject_reasons": rejects["reason"].str.split(":").str[0].value_counts().to_dict() if len(rejects)
        else {}, "catalog_rejects": n_catalog_rejects, "queries": len(lists), "items": len(frame),
        "team_items": frame["team"].value_counts().reindex([il.CONTROL, il.VARIATION],
                                                           fill_value=0).to_dict(),
        "first_pick": {t: first_pick.get(t, 0) for t in (il.CONTROL, il.VARIATION)},
        "queries_with_identical_top": int(identical),
        "products_without_summary": int(valid.loc[summary.eq("").to_numpy(), "product_id"].nunique()),
        "candidate_rows_title_only": int(summary.eq("").sum()),
        "scorer_fingerprint": scorer.fingerprint}
    if manifest["products_without_summary"]:
        logger.warning("%d products have no summary; their variation score uses the title only",
                       manifest["products_without_summary"])
    rio.write_json_atomic(manifest, Path(paths.manifest))
    logger.info("exported %d interleaved lists (%d items) to %s", len(lists), len(frame), out)
    return ExportResult(manifest, paths)



def _clean(value: Any) -> Any:
    return None if isinstance(value, float) and value != value else value


def run_analyze(config: AnalyzeConfig) -> AnalyzeResult:
    """Outcome per impression, wins/losses/ties per query and overall, Δ and sign test; results + plot +
    report."""

    export = read_export(config.export)  # an edited or truncated export is refused, never analysed
    events = rio.read_table(config.events).reset_index(drop=True)
    _require(f"events {config.events}", events, ["query_id", "impression_id", "event"])
    if "position" not in events.columns and "product_id" not in events.columns:
        raise InputError(f"events {config.events}: needs a position or a product_id column")
    matched, rejects, lists = il.match_events(export, events)
    if len(rejects):
        logger.warning("%d of %d events rejected (see rejects.csv)", len(rejects), len(events))
    counted = matched[matched["event"].isin(config.count_events)]
    clicks = counted.groupby(["query_id", "impression_id"], sort=False)["product_id"].agg(set)
    impressions = []
    for (qid, iid), _ in matched.groupby(["query_id", "impression_id"], sort=False):
        c, v = il.attribute_clicks(lists[qid], clicks.get((qid, iid), set()))
        impressions.append((qid, iid, c, v, il.outcome_from_credit(c, v) if c + v else il.NO_PREFERENCE))
    imp = pd.DataFrame(impressions, columns=["query_id", "impression_id", "control_credit",
                                             "variation_credit", "outcome"])
    queries = export.drop_duplicates("query_id")[["query_id", "query"]].astype({"query_id": str})
    by_query = imp.groupby("query_id")["outcome"].agg(list).to_dict()
    stats = [{"query_id": q, **il.summarize_outcomes(by_query.get(q, []))} for q in queries["query_id"]]
    per_query = queries.merge(pd.DataFrame(stats), on="query_id") if stats else queries
    overall = il.summarize_outcomes(imp["outcome"])
    experiment = ", ".join(sorted(set(export["experiment_id"].astype(str))))
    p, delta = overall["p_value"], overall["delta"]
    decided = overall["wins"] + overall["losses"]
    verdict = ("no decided impressions" if not decided else
               f"no significant preference (p >= {config.alpha})" if p >= config.alpha else
               f"{il.VARIATION if overall['wins'] > overall['losses'] else il.CONTROL} preferred "
               f"(p < {config.alpha})")
    results = {
        "experiment_id": experiment, "count_events": list(config.count_events),
        "overall": {k: _clean(v) for k, v in overall.items()} | {
            "win_rate": overall["wins"] / decided if decided else None},
        "verdict": verdict, "queries": len(per_query),
        "queries_with_impressions": int((per_query["impressions"] > 0).sum()),
        "events_in": len(events), "events_matched": len(matched), "events_counted": len(counted),
        "events_rejected": len(rejects), "reject_reasons": _reason_counts(
            {i: r.split("; ") for i, r in enumerate(rejects["reason"])}) if len(rejects) else {},
        "conventions": "wins = variation wins, losses = control wins; credit = distinct "
                       "items of a team with a "
                       "counted event; impressions without counted events are "
                       "no_preference and excluded from "
                       "wins/losses/ties, Δ and the sign test; delta = (wins - losses) / "
                       "(wins + losses + ties) "
                       "(twice Chapelle et al.'s Δ_AB, given as delta_chapelle); p_value = "
                       "two-sided sign test."}
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = AnalyzePaths.under(out)
    rio.write_json_atomic(results, Path(paths.results))
    rio.write_csv_atomic(per_query, Path(paths.per_query))
    rio.write_parquet_atomic(imp, Path(paths.impressions))
    rio.write_csv_atomic(rejects, Path(paths.rejects))
    title = (f"{experiment}: Δ = {delta:+.3f} (variation vs control), sign test p = {p:.3g}, "
             f"{overall['wins']}W / {overall['losses']}L / {overall['ties']}T")
    plot_wins_per_query(per_query, overall, title, Path(paths.plot))
    write_interleaving_report(results, Path(paths.report))
    logger.info("interleaving %s: %s", experiment, verdict)
    return AnalyzeResult(results, paths)
