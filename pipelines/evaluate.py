"""Stage: the paper's offline table (R@90P and NDCG@5 gains over title-only, full and tail).

Scores every judged pair of a golden set under the candidates ``none`` (title only), ``desc``
(title + description) and each summaries file, with the one scorer, then writes ``scores.parquet``,
``metrics.json`` and ``report.md`` / ``report.html``.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

import pandas as pd

from relsum.config import cfg
from relsum.paths import SAMPLE_DIR

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")


@dataclasses.dataclass
class EvaluateConfig:
    golden: str = cfg(str(SAMPLE_DIR / "golden"), help="Golden-layout folder: queries.csv, judgments.csv and a catalog.")
    reward_model: str = cfg("", help="Local cross-encoder folder (default: the bootstrap model in RELSUM_HOME, trained once if missing).")
    summaries: dict = cfg({}, help="Candidate name -> summaries file (columns product_id, summary).")
    out_dir: str = cfg("relsum_home/evaluation", help="Output folder.")
    k: int = cfg(5, help="Cut-off of NDCG@k.")
    min_precision: float = cfg(0.9, help="Precision floor of R@P (0.9 gives the paper's R@90P).")
    n_boot: int = cfg(1000, help="Bootstrap resamples over queries for the 95% confidence intervals.")
    seed: int = cfg(0, help="Bootstrap seed.")

    def __post_init__(self):
        for name in self.summaries:
            if name in ("none", "desc") or not _NAME.match(str(name)):
                raise ValueError(f"summary candidate name {name!r} must be [A-Za-z0-9_-]+ and not none/desc")
        if not 0 < self.min_precision <= 1:
            raise ValueError("min_precision must be in (0, 1]")


def load_summaries(path: str) -> pd.Series:
    """product_id -> summary; a file with duplicate products or missing columns is an error."""
    from relsum.data.io import read_table

    frame = read_table(path)
    missing = {"product_id", "summary"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: summaries file lacks columns {sorted(missing)}")
    dupes = frame["product_id"][frame["product_id"].duplicated()]
    if len(dupes):
        raise ValueError(f"{path}: {len(dupes)} duplicate product_id rows, e.g. {dupes.iloc[0]!r}")
    return frame.set_index("product_id")["summary"].fillna("").astype(str)


def score_candidates(golden, summaries: dict[str, pd.Series], scorer) -> tuple[pd.DataFrame, dict]:
    """One row per judged pair with a ``score_<candidate>`` column per candidate, plus coverage counts."""
    pairs = golden.judgments.merge(golden.queries[["query_id", "query", "tail"]], on="query_id")
    pairs = pairs.merge(golden.catalog[["product_id", "title", "text"]], on="product_id")
    queries, titles = pairs["query"].tolist(), pairs["title"].tolist()
    scores = pairs[["query_id", "product_id", "label", "tail"]].copy()
    scores["score_none"] = scorer.score(queries, titles)
    scores["score_desc"] = scorer.score(queries, titles, pairs["text"].tolist())
    coverage = {}
    for name, by_product in summaries.items():
        texts = pairs["product_id"].map(by_product)
        coverage[name] = {"pairs": int(len(pairs)), "with_summary": int(texts.notna().sum()),
                          "non_empty": int(texts.fillna("").str.strip().ne("").sum())}
        if texts.isna().any():
            logger.warning("%s: %d judged pairs have no summary; scored as title only", name, int(texts.isna().sum()))
        scores[f"score_{name}"] = scorer.score(queries, titles, texts.fillna("").tolist())
    return scores, coverage


def run(config: EvaluateConfig, scorer=None, extra_sections: dict[str, str] | None = None) -> dict:
    from relsum.data.golden import load_golden
    from relsum.data.io import write_json_atomic, write_parquet_atomic
    from relsum.evaluation.offline import compute_offline_metrics, format_table, to_jsonable
    from relsum.evaluation.report import write_report
    from relsum.scoring.scorer import Scorer, ScorerConfig

    from .reward_model import ensure_reward_model

    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    golden = load_golden(config.golden)
    rejected = {t: int(len(r)) for t, r in golden.rejects.items() if len(r)}
    if rejected:
        logger.warning("golden set rows rejected: %s (run `relsum validate` for reasons)", rejected)
    summaries = {name: load_summaries(path) for name, path in config.summaries.items()}
    if scorer is None:
        scorer = Scorer(ensure_reward_model(config.reward_model), ScorerConfig(store=True))
    scores, coverage = score_candidates(golden, summaries, scorer)
    candidates = ["none", "desc", *summaries]
    metrics = compute_offline_metrics(scores, candidates, baseline="none", k=config.k,
                                      min_precision=config.min_precision, n_boot=config.n_boot, seed=config.seed)
    metrics = to_jsonable(metrics)
    metrics["summary_coverage"] = coverage
    metrics["golden_rejects"] = rejected
    metrics["scorer_fingerprint"] = getattr(scorer, "fingerprint", None)
    write_parquet_atomic(scores, out / "scores.parquet")
    write_json_atomic(metrics, out / "metrics.json")
    report = write_report(metrics, scores, out, extra_sections=extra_sections)
    table = format_table(metrics)
    return {"metrics": metrics, "table": table, "paths": {"scores": str(out / "scores.parquet"),
            "metrics": str(out / "metrics.json"), **{k: str(v) for k, v in report.items()}}}
