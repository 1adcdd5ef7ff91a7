"""Stage: the paper's offline table (R@90P and NDCG@5 gains over title-only, full and tail).

Scores every judged pair of a golden set under the candidates ``none`` (title only), ``desc``
(title + description), ``lead`` (title + the first ``lead_words`` words of the catalog text: the served
summary's length, so the yardstick a summary must beat; ``lead_words=0`` leaves it out) and each
summaries file, with the one scorer, then writes ``scores.parquet``, ``metrics.json`` and ``report.md`` /
``report.html``.

Summaries files are matched to golden products by id, stripped as the contracts strip them
(case-sensitive). Their coverage of the judged golden products is printed in the gains table, and a file
below ``min_summary_coverage`` is refused before any scoring: a product without a summary scores as
title only, so ids that do not match (other case, another catalog) would report the candidate at +0.0%.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from relsum.core.errors import InputError
from relsum.pipelines.configs import EvaluateConfig
from relsum.scoring.protocol import RelevanceScorer

logger = logging.getLogger(__name__)

#: Every file ``evaluate`` writes into ``out_dir``; the folder is replaced as a whole (staged, then swapped),
#: so an ``out_dir`` holding anything else is refused before any work.
OUTPUT_FILES = frozenset({"scores.parquet", "metrics.json", "pr_curves.png", "win_loss.png", "report.md",
                          "report.html"})


# kw_only: the fields keep the order the files were listed in before (win_loss, optional, is not last)
@dataclasses.dataclass(frozen=True, kw_only=True)
class EvaluationPaths:
    """The files one evaluation writes under ``out_dir`` (``win_loss`` is ``None`` when no per-query
    win/loss plot was drawn)."""

    scores: str
    metrics: str
    pr_curves: str
    win_loss: str | None = None
    md: str
    html: str

    @classmethod
    def under(cls, out: Path, report: Mapping[str, Path]) -> EvaluationPaths:
        """The paths of ``scores.parquet``, ``metrics.json`` and the files :func:`write_report` returned."""
        return cls(scores=str(out / "scores.parquet"), metrics=str(out / "metrics.json"),
                   **{k: str(v) for k, v in report.items()})

    def to_dict(self) -> dict[str, str]:
        """Kind -> path of the files written; a file not written is left out."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclasses.dataclass(frozen=True)
class EvaluationResult:
    """What :func:`run` returns: the metrics (``metrics.json``'s content), the printed gains table and
    the files."""

    #: Keys from :mod:`relsum.metrics.names` (``subsets``, ``config``, ...) plus ``summary_coverage``,
    #: ``golden_rejects`` and ``scorer_fingerprint``; JSON-ready (``None`` for undefined values).
    metrics: dict[str, Any]
    table: str
    paths: EvaluationPaths

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["paths"] = self.paths.to_dict()
        return out


def _record(path: str, index: int) -> str:
    """How a user finds row ``index`` (0-based) of a summaries table in its file."""
    if Path(path).suffix.lower() == ".csv":
        return f"row {index + 2} (header = row 1)"
    return f"record {index + 1}"


def load_summaries(path: str) -> pd.Series:
    """product_id -> summary under the data contracts' missing-value and type rules; bad files raise
    InputError.

    ``path`` may also be a ``relsum summarize`` output folder (its last committed run is read). Ids are
    stripped as the contracts strip them and must be a string, an int or a whole float; a summary must be a
    string. Nothing is ``str()``-ed: a dict, list, number, bool or bytes summary would be scored as its
    Python repr, so such a file is refused naming the row. A missing summary (empty CSV cell, null, NaN) or
    a null-marker string (``NaN``, ``None``, ``null``, any case) is what a serializer leaves for "no
    summary": the product is left out of the series, so it counts as uncovered (and scores title only)
    instead of being scored as the text ``"None"`` and counted as coverage.
    """
    from relsum.data.contract_types import id_type_problem, is_null_marker, text_type_problem
    from relsum.data.ids import as_id
    from relsum.data.io import READ_ERROR_COL, read_table
    from relsum.data.sanitize import is_missing

    if Path(path).is_dir():
        from relsum.summarize.output import read_job_output

        frame = read_job_output(path)[["product_id", "summary"]]
    else:
        frame = read_table(path)
    missing = {"product_id", "summary"} - set(frame.columns)
    if missing:
        raise InputError(f"{path}: summaries file lacks column(s) {sorted(missing)} "
                         f"(has {list(frame.columns)})")
    frame = frame.reset_index(drop=True)
    if READ_ERROR_COL in frame.columns and frame[READ_ERROR_COL].notna().any():
        bad = frame[READ_ERROR_COL].dropna()
        raise InputError(f"{path}: {len(bad)} unreadable row(s), e.g. {bad.iloc[0]}")
    wrong = [(i, f"{col} is {problem}") for col, check in (("product_id", id_type_problem),
                                                            ("summary", text_type_problem))
             for i, v in enumerate(frame[col]) if not is_missing(v) and (problem := check(v))]
    if wrong:
        i, detail = min(wrong)
        raise InputError(f"{path}: {len(wrong)} value(s) of a wrong type, e.g. {_record(path, i)}: {detail}; "
                         "ids must be text or whole numbers, summaries text (nothing is coerced with str())")
    ids = frame["product_id"].map(as_id).map(lambda v: None if v is None or is_null_marker(v) else v)
    if ids.isna().any():
        raise InputError(f"{path}: {int(ids.isna().sum())} row(s) without a product_id, e.g. "
                         f"{_record(path, int(ids[ids.isna()].index[0]))} (empty, NaN, None and null "
                         "count as missing)")
    dupes = ids[ids.duplicated()]
    if len(dupes):
        raise InputError(f"{path}: {len(dupes)} duplicate product_id row(s) after stripping, "
                         f"e.g. {dupes.iloc[0]!r}")
    absent = frame["summary"].map(lambda v: is_missing(v) or is_null_marker(v)).to_numpy(dtype=bool)
    if absent.any():
        logger.warning("%s: %d of %d summaries are missing (empty, null or a null marker such as 'NaN'); "
                       "those products count as not covered and score as title only", path, int(absent.sum()),
                       len(frame))
    return pd.Series([str(v) for v in frame["summary"][~absent]],
                     index=pd.Index(ids[~absent], name="product_id"), name="summary")


def write_summaries(series: pd.Series, path: str | Path) -> str:
    """product_id -> summary as a ``product_id, summary`` Parquet file (atomic); returns the path.

    The file format :func:`load_summaries` reads: every stage that makes a candidate writes it here."""
    from relsum.data.io import write_parquet_atomic

    write_parquet_atomic(pd.DataFrame({"product_id": series.index, "summary": series.to_numpy()}), Path(path))
    return str(path)


def golden_products(golden) -> pd.DataFrame:
    """The judged golden products (``product_id, title, text``), once each: what every candidate
    summarizes."""
    products = golden.catalog[golden.catalog["product_id"].isin(golden.judgments["product_id"])]
    return products[["product_id", "title", "text"]].drop_duplicates("product_id").reset_index(drop=True)


def summarize_golden(products: pd.DataFrame, policy, path: str | Path, model_dir: str = "",
                     adapter_dir: str | None = None, loaded: tuple | None = None) -> pd.Series:
    """Greedy served summaries of ``products`` by one policy, written to ``path`` with
    :func:`write_summaries`.

    The one way the demo, the ablation and the retrain DAG make a summaries candidate: ``loaded`` is a
    ``(model, tokenizer)`` already in memory, else the policy is loaded from ``model_dir`` (+ ``adapter_dir``,
    merged) in ``policy.load_dtype()``. ``policy`` is the :class:`~relsum.policy.config.PolicyConfig`
    (prompt cap, generation settings); served_summary is applied inside generation.
    """
    from relsum.training.policy_eval import summarize_products

    if loaded is None:
        from relsum.policy.load import load_policy

        loaded = load_policy(model_dir, adapter_dir, merge=adapter_dir is not None, dtype=policy.load_dtype())
    series = summarize_products(loaded[0], loaded[1], products, policy, show_progress=True)
    write_summaries(series, path)
    return series


def judged_pairs(golden) -> pd.DataFrame:
    """The golden judgments with their query text, tail flag and catalog title/text (the pairs scored)."""
    pairs = golden.judgments.merge(golden.queries[["query_id", "query", "tail"]], on="query_id")
    return pairs.merge(golden.catalog[["product_id", "title", "text"]], on="product_id")


def summary_coverage(pairs: pd.DataFrame, by_product: pd.Series) -> dict:
    """How much of the judged golden set a summaries file covers.

    ``coverage = products_with_summary / judged_products`` over distinct judged products; pair counts
    and up to 5 missing ids are kept for the report, plus how many missing ids match only when case
    is ignored (the usual cause of a near-zero coverage).
    """
    products = pd.Index(pairs["product_id"].unique())
    covered = products.isin(by_product.index)
    texts = pairs["product_id"].map(by_product)
    missing = products[~covered]
    folded = {str(p).casefold() for p in by_product.index}
    return {"judged_products": int(len(products)), "products_with_summary": int(covered.sum()),
            "coverage": float(covered.mean()) if len(products) else 1.0,
            "pairs": int(len(pairs)), "pairs_with_summary": int(texts.notna().sum()),
            "non_empty": int(texts.fillna("").str.strip().ne("").sum()),
            "missing_examples": [str(p) for p in missing[:5]],
            "missing_matching_ignoring_case": int(sum(str(p).casefold() in folded for p in missing)),
            "defects": _file_defects(pairs, by_product)}


def _file_defects(pairs: pd.DataFrame, by_product: pd.Series) -> dict[str, int]:
    """:func:`relsum.policy.served.summary_defects` of the file's summaries of judged products (one per
    product, with its title): tokens the ranker spends on nothing (labels, numbering, restated titles)."""
    from relsum.policy.served import summary_defects

    products = pairs.drop_duplicates("product_id").set_index("product_id")
    products = products[products.index.isin(by_product.index)]
    titles = products["title"].tolist() if "title" in products.columns else None
    return summary_defects(by_product.reindex(products.index).tolist(), titles)


def check_coverage(coverage: dict[str, dict], paths: dict[str, str], floor: float) -> None:
    """Refuse the first summaries file below ``floor`` with what is wrong and how to go on."""
    for name, cov in coverage.items():
        if cov["coverage"] >= floor:
            continue
        case = cov["missing_matching_ignoring_case"]
        hint = (f"; {case} of the missing ids match only when case is ignored (ids are case-sensitive)"
                if case else "")
        raise InputError(
            f"summaries {name!r} ({paths[name]}) cover {cov['products_with_summary']} "
            f"of {cov['judged_products']} "
            f"judged golden products ({100 * cov['coverage']:.1f}%), below min_summary_coverage={floor:g}; "
            f"missing e.g. {cov['missing_examples'][:3]}{hint}. Summarize the golden "
            f"catalog's products, or set min_summary_coverage=0 to score the uncovered ones as title only")


def score_candidates(golden, summaries: dict[str, pd.Series],
                     scorer: RelevanceScorer, lead_words: int = 0) -> tuple[pd.DataFrame, dict]:
    """One row per judged pair with a ``score_<candidate>`` column per candidate, plus coverage counts.

    ``lead_words`` > 0 adds ``score_lead``: title + the first ``lead_words`` words of the catalog text
    (:func:`relsum.scoring.documents.lead_text`), the catalog's own text cut to a summary's length."""
    pairs = judged_pairs(golden)
    queries, titles = pairs["query"].tolist(), pairs["title"].tolist()
    scores = pairs[["query_id", "product_id", "label", "tail"]].copy()
    scores["score_none"] = scorer.score(queries, titles)
    scores["score_desc"] = scorer.score(queries, titles, pairs["text"].tolist())
    if lead_words:
        from relsum.scoring.documents import lead_text

        scores["score_lead"] = scorer.score(queries, titles,
                                            [lead_text(t, lead_words) for t in pairs["text"]])
    coverage = {}
    for name, by_product in summaries.items():
        texts = pairs["product_id"].map(by_product)
        coverage[name] = summary_coverage(pairs, by_product)
        if texts.isna().any():
            logger.warning("%s: %d judged pairs have no summary; "
                           "scored as title only", name, int(texts.isna().sum()))
        scores[f"score_{name}"] = scorer.score(queries, titles, texts.fillna("").tolist())
    return scores, coverage


def run(config: EvaluateConfig, scorer: RelevanceScorer | None = None,
        extra_sections: dict[str, str] | None = None) -> EvaluationResult:
    """Score the golden set under every candidate, write the scores, metrics and report."""
    from relsum.data.atomic_dir import check_replaceable
    from relsum.data.golden import load_golden
    from relsum.evaluation.offline import compute_offline_metrics, format_table, to_jsonable
    from relsum.scoring.factory import make_scorer

    from .reward_model import ensure_reward_model

    out = Path(config.out_dir)
    check_replaceable(out, OUTPUT_FILES, "evaluate")  # before any work: a swap must not delete foreign files
    golden = load_golden(config.golden)
    rejected = {t: int(len(r)) for t, r in golden.rejects.items() if len(r)}
    if rejected:
        logger.warning("golden set rows rejected: %s (run `relsum validate` for reasons)", rejected)
    summaries = {name: load_summaries(path) for name, path in config.summaries.items()}
    pairs = judged_pairs(golden)
    check_coverage({name: summary_coverage(pairs, s) for name, s in summaries.items()}, config.summaries,
                   config.min_summary_coverage)  # before the scorer loads: a wrong file fails in seconds
    if scorer is None:
        scorer = make_scorer(ensure_reward_model(config.reward_model), config.scorer)
    scores, coverage = score_candidates(golden, summaries, scorer, lead_words=config.lead_words)
    candidates = ["none", "desc", *(["lead"] if config.lead_words else []), *summaries]
    metrics = compute_offline_metrics(scores, candidates, baseline="none", k=config.k,
                                      min_precision=config.min_precision, n_boot=config.n_boot,
                                      seed=config.seed)
    metrics = to_jsonable(metrics)
    metrics["summary_coverage"] = coverage
    metrics["golden_rejects"] = rejected
    metrics["scorer_fingerprint"] = scorer.fingerprint
    metrics["lead_words"] = config.lead_words
    paths = write_outputs(out, metrics, scores, extra_sections)
    return EvaluationResult(metrics=metrics, table=format_table(metrics), paths=paths)


def write_outputs(out: Path, metrics: dict[str, Any], scores: pd.DataFrame,
                  extra_sections: Mapping[str, str] | None = None) -> EvaluationPaths:
    """Write scores, metrics, report and plots into a staging folder and swap it in for ``out``.

    A run killed or stopped mid-write (full disk, lost permissions) leaves ``out`` exactly as it was:
    never new ``metrics.json`` beside an old report. An environment fault is one line naming the path.
    """
    from relsum.core.errors import EnvironmentProblem, RelsumError, is_environment_oserror, os_error_text
    from relsum.data.atomic_dir import named_oserror, staged_folder
    from relsum.data.io import write_json_atomic, write_parquet_atomic
    from relsum.evaluation.report import write_report

    try:
        with staged_folder(out, OUTPUT_FILES, "evaluate") as staging:
            with named_oserror(staging / "scores.parquet"):
                write_parquet_atomic(scores, staging / "scores.parquet")
            with named_oserror(staging / "metrics.json"):
                write_json_atomic(metrics, staging / "metrics.json")
            report = write_report(metrics, scores, staging, extra_sections=extra_sections)
    except OSError as exc:
        if isinstance(exc, RelsumError) or not is_environment_oserror(exc):
            raise
        raise EnvironmentProblem(f"evaluate into {out} stopped: {os_error_text(exc)}; {out} was left as it "
                                 "was (no partial output), fix this and rerun") from exc
    return EvaluationPaths.under(out, {kind: out / path.name for kind, path in report.items()})
