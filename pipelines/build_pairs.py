"""Stage: build the training pairs (SQL extract -> one scorer -> description-gap filter).

Reads the search log and the catalog, validates both (rejects are written, never dropped silently),
extracts the date range's deduplicated pairs (:func:`relsum.pairs.extract.extract_pairs`), scores r(q,t) and
r(q,[t;d]) with the one scorer, sets proxy labels, filters by the gap and writes:
``pairs.parquet`` (kept), ``dropped.parquet`` (with ``drop_reason``), ``filter_stats.json``,
``gap_histogram.png`` and ``rejects/*.csv``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from relsum.core.output_files import OutputFiles
from relsum.pairs.config import FilterConfig
from relsum.pairs.extract import extract_pairs
from relsum.pairs.filter import filter_pairs, label_and_gap
from relsum.pipelines.configs import BuildPairsConfig
from relsum.scoring.protocol import RelevanceScorer

logger = logging.getLogger(__name__)


def load_inputs(config: BuildPairsConfig) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, pd.DataFrame]]:
    """Validated catalog and search log, plus the rejects of each."""
    from relsum.data.config import ContractConfig
    from relsum.data.contracts import validate_catalog, validate_search_log
    from relsum.data.io import read_table

    contract = ContractConfig(max_text_tokens=config.max_text_tokens)
    catalog = validate_catalog(read_table(config.catalog), contract)
    log = validate_search_log(read_table(config.search_log), contract,
                              known_products=set(catalog.valid["product_id"]))
    return catalog.valid, log.valid, {"catalog": catalog.rejects, "search_log": log.rejects}


@dataclasses.dataclass(frozen=True)
class PairsPaths(OutputFiles):
    """The files one pairs build writes (all in one folder)."""

    pairs: str = "pairs.parquet"
    dropped: str = "dropped.parquet"
    stats: str = "filter_stats.json"
    histogram: str = "gap_histogram.png"


@dataclasses.dataclass(frozen=True)
class PairsResult:
    """What :func:`run` (and the retrain DAG's ``score_filter`` step) returns: the files and the
    statistics."""

    paths: PairsPaths
    stats: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def extract_range(config: BuildPairsConfig, out: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Validated inputs -> the date range's deduplicated pairs joined to the catalog, plus input counts.

    The rejects of each input are written to ``<out>/rejects/<table>.csv`` (never dropped silently).
    """
    from relsum.data.io import write_csv_atomic

    (out / "rejects").mkdir(parents=True, exist_ok=True)
    catalog, log, rejects = load_inputs(config)
    for table, frame in rejects.items():
        write_csv_atomic(frame, out / "rejects" / f"{table}.csv")
    pairs, unmatched = extract_pairs(catalog, log, start_date=config.start_date, end_date=config.end_date,
                                     include_undated=config.include_undated)
    logger.info("extracted %d deduplicated pairs (%d without a catalog product)", len(pairs), len(unmatched))
    return pairs, {"log_rows_in": int(len(log) + len(rejects["search_log"])),
                   "log_rows_rejected": int(len(rejects["search_log"])),
                   "catalog_rows_rejected": int(len(rejects["catalog"])),
                   "pairs_without_catalog_product": int(len(unmatched)),
                   "date_range": [config.start_date, config.end_date]}


def score_and_filter(pairs: pd.DataFrame, scorer: RelevanceScorer, filter_config: FilterConfig, out: Path,
                     input_stats: dict[str, Any]) -> PairsResult:
    """Score r(q,t) and r(q,[t;d]) with the one scorer, set proxy labels, filter by the gap, write the files.

    ``input_stats`` (the extraction's counts) are merged into ``filter_stats.json`` with the scorer's
    fingerprint, so the statistics say which inputs and which scorer produced the pairs.
    """
    from relsum.data.io import write_json_atomic, write_parquet_atomic

    queries, titles = pairs["query"].tolist(), pairs["title"].tolist()
    r_title = scorer.score(queries, titles)
    r_desc = scorer.score(queries, titles, pairs["text"].tolist())
    kept, dropped, stats = filter_pairs(label_and_gap(pairs, r_title, r_desc), filter_config)
    stats.update(input_stats)
    stats["scorer_fingerprint"] = scorer.fingerprint
    paths = PairsPaths.under(out)
    write_parquet_atomic(kept, Path(paths.pairs))
    write_parquet_atomic(dropped, Path(paths.dropped))
    write_json_atomic(stats, Path(paths.stats))
    plot_gap_histogram(stats, filter_config, Path(paths.histogram))
    return PairsResult(paths, stats)


def run(config: BuildPairsConfig, scorer: RelevanceScorer | None = None) -> PairsResult:
    """Build, score and filter the pairs; returns the output paths and the filter statistics."""
    from relsum.scoring.factory import make_scorer

    out = Path(config.out_dir)
    pairs, input_stats = extract_range(config, out)
    if scorer is None:
        if not config.reward_model:
            raise ValueError("build_pairs needs reward_model (a local cross-encoder folder)")
        scorer = make_scorer(config.reward_model, config.scorer)
    return score_and_filter(pairs, scorer, config.filter, out, input_stats)


def plot_gap_histogram(stats: dict, config: FilterConfig, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from relsum.data.io import atomic_path

    edges, counts = stats["gap_histogram"]["edges"], stats["gap_histogram"]["counts"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(edges[:-1], counts, width=edges[1] - edges[0], align="edge", color="#4c72b0", edgecolor="white")
    if config.mode == "threshold":
        ax.axvline(config.threshold, color="#c44e52", linestyle="--", label=f"threshold {config.threshold}")
        ax.legend()
    ax.set_xlabel("|r(q,[t;d]) - r(q,t)|")
    ax.set_ylabel("pairs")
    ax.set_title(f"Description gap: kept {stats['kept']} of {stats['pairs_in']} pairs")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
