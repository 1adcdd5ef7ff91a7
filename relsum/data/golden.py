"""The golden set: human-judged queries and products, validated through the contracts.

A golden folder holds:

- ``queries.csv``: ``query_id``, ``query`` and ``tail`` / ``traffic`` / ``rarity_tier`` (see
  :mod:`relsum.data.contracts`)
- ``judgments.csv``: ``query_id``, ``product_id``, ``grade`` (optional ``label``)
- catalog: exactly one of ``products.jsonl``, ``catalog.parquet``, ``catalog.csv``, ``catalog.jsonl`` in
  the folder (two are refused: which one the judgments refer to is a guess), else ``../products.jsonl``
  (the bundled sample keeps ``golden/`` and ``train/`` beside one shared catalog). The file used is
  logged and kept as :attr:`GoldenSet.catalog_source`
- ``relsum.yaml`` (optional, in the folder or its parent): a ``grade_map`` key used when no config is passed

Every table is validated and its rejects are kept on the :class:`GoldenSet`: judgments for products
or queries that did not validate are rejected with a reason, never dropped silently, because a
golden set that quietly loses pairs gives optimistic metrics.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from relsum.core.config_yaml import load_yaml_file
from relsum.core.errors import InputError
from relsum.data.config import ContractConfig
from relsum.data.contracts import (
    ContractError,
    ValidationResult,
    validate_catalog,
    validate_judgments,
    validate_queries,
)
from relsum.data.io import read_table

logger = logging.getLogger(__name__)

SAMPLE_GRADE_MAP = {"3": 1.0, "2": 0.5, "1": 0.0, "0": 0.0, "Exact": 1.0, "Partial": 0.5, "Irrelevant": 0.0}
CATALOG_CANDIDATES = ("products.jsonl", "catalog.parquet", "catalog.csv", "catalog.jsonl",
                      "../products.jsonl")
CONFIG_FILE = "relsum.yaml"


@dataclasses.dataclass
class GoldenSet:
    """Validated golden tables: queries carry ``tail`` (bool), judgments carry ``grade`` and ``label``."""

    queries: pd.DataFrame
    judgments: pd.DataFrame
    catalog: pd.DataFrame
    rejects: dict[str, pd.DataFrame]
    summaries: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    config: ContractConfig = dataclasses.field(default_factory=ContractConfig)
    #: the catalog file read (``"<DataFrame>"`` when one was passed), for logs and reports
    catalog_source: str = ""

    @property
    def n_rejected(self) -> int:
        return sum(len(r) for r in self.rejects.values())


def find_catalog(folder: Path) -> Path:
    """The catalog file of a golden folder (:data:`CATALOG_CANDIDATES`; two in the folder are refused)."""
    local = [name for name in CATALOG_CANDIDATES if "/" not in name and (folder / name).is_file()]
    if len(local) > 1:
        raise ContractError("catalog", message=(
            f"{folder}: {len(local)} catalog files ({', '.join(local)}); which one the judgments refer to "
            "would be a guess: keep one catalog in the folder and move the others out"))
    for name in CATALOG_CANDIDATES:
        path = (folder / name).resolve()
        if path.is_file():
            return path
    raise ContractError("catalog", message=(
        f"{folder}: no catalog found; looked for {', '.join(CATALOG_CANDIDATES)} (or pass catalog=)"))


def find_grade_map(folder: Path) -> tuple[dict[str, float] | None, Path] | None:
    """The ``grade_map`` of ``relsum.yaml`` in ``folder`` or its parent, with the file it came from."""
    for candidate in (folder / CONFIG_FILE, folder.parent / CONFIG_FILE):
        if not candidate.is_file():
            continue
        data = load_yaml_file(candidate) or {}
        if isinstance(data, dict) and "grade_map" in data:
            return _checked_grade_map(data["grade_map"], candidate), candidate
    return None


def _label(value: Any) -> float | None:
    try:
        label = float(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None
    return label if label is not None and 0.0 <= label <= 1.0 else None


def _checked_grade_map(grade_map: Any, source: Path) -> dict[str, float] | None:
    """A ``relsum.yaml`` grade map is user input: grades -> labels in [0, 1] (null: the label column), or
    one line naming the file (a label of 4 would otherwise reach NDCG as a gain and the reward as a target;
    ``ContractConfig``'s own check would raise a bare ValueError without saying which file)."""
    if grade_map is None:
        return None
    if not isinstance(grade_map, dict) or not grade_map:
        raise InputError(f"{source}: grade_map must be a non-empty mapping of grade -> label in [0, 1], "
                         f"got {grade_map!r:.80}")
    bad = {k: v for k, v in grade_map.items() if _label(v) is None or isinstance(k, list | dict | tuple)}
    if bad:
        raise InputError(f"{source}: grade_map labels must be numbers in [0, 1]; bad: {bad!r:.200}")
    return {k: float(v) for k, v in grade_map.items()}


def config_for(folder: Path) -> ContractConfig:
    """ContractConfig with the folder's ``relsum.yaml`` grade map if there is one, else the defaults."""
    found = find_grade_map(folder)
    if found is None:
        return ContractConfig()
    logger.info("golden: grade_map from %s", found[1])
    return ContractConfig(grade_map=found[0])


def load_golden(folder: str | Path, config: ContractConfig | None = None,
                catalog: str | Path | pd.DataFrame | None = None) -> GoldenSet:
    """Load and validate a golden folder (layout in the module docstring).

    ``config`` defaults to the folder's ``relsum.yaml`` grade map, else the paper's. ``catalog`` may be
    a source for :func:`relsum.data.io.read_table`, an already-read DataFrame, or None to find it.
    """
    folder = Path(folder)
    for name in ("queries.csv", "judgments.csv"):
        if not (folder / name).is_file():
            raise ContractError(name.removesuffix(".csv"), message=f"{folder}: {name} not found")
    config = config or config_for(folder)
    if catalog is None:
        catalog = find_catalog(folder)
    catalog_source = "<DataFrame>" if isinstance(catalog, pd.DataFrame) else str(catalog)
    logger.info("golden %s: catalog %s", folder, catalog_source)
    catalog_df = catalog if isinstance(catalog, pd.DataFrame) else read_table(catalog)
    results: dict[str, ValidationResult] = {}
    results["catalog"] = validate_catalog(catalog_df, config)
    results["queries"] = validate_queries(read_table(folder / "queries.csv"), config)
    results["judgments"] = validate_judgments(
        read_table(folder / "judgments.csv"), config,
        known_queries=set(results["queries"].valid["query_id"]),
        known_products=set(results["catalog"].valid["product_id"]))
    for table, result in results.items():
        if result.valid.empty:  # metrics over an empty table are not metrics: say so before anyone reads them
            logger.warning("golden %s: %s has no valid rows "
                           "(%d in, %d rejected)", folder, table, result.rows_in,
                           len(result.rejects))
    judged = set(results["judgments"].valid["query_id"])
    unjudged = sorted(set(results["queries"].valid["query_id"]) - judged)
    if unjudged:
        logger.warning("golden: %d queries have no valid judgment (e.g. %s)", len(unjudged), unjudged[:3])
    golden = GoldenSet(
        queries=results["queries"].valid, judgments=results["judgments"].valid,
        catalog=results["catalog"].valid, rejects={k: r.rejects for k, r in results.items()},
        summaries={k: r.summary() for k, r in results.items()}, config=config, catalog_source=catalog_source)
    logger.info("golden %s: %d queries (%d tail), %d judgments, %d products, %d rejected rows", folder,
                len(golden.queries), int(golden.queries["tail"].sum()), len(golden.judgments),
                len(golden.catalog), golden.n_rejected)
    return golden
