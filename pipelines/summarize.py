"""Stage ``summarize``: write a summary for every catalog product (thin entry point for the CLI and DAGs).

``run(config, partition=None)`` runs :func:`relsum.summarize.job.run_summarize`. With a ``partition``
(e.g. an Airflow data-interval key such as ``2024-05-01``) the output goes to
``<out_dir>/partition=<key>/``, so a daily DAG writes one partition per interval; rerunning the same
partition is idempotent (resumes an interrupted run, or returns the committed manifest when the
catalog is unchanged). With ``incremental``, a new partition carries over unchanged products from
the latest earlier committed partition, so each day only generates what changed.

The command line is ``relsum summarize [--config FILE] [key=value ...] [--partition KEY]`` (the stage
table in :mod:`relsum.cli_stages`); this module has no command line of its own.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path
from typing import Any

from relsum.core.errors import InputError
from relsum.summarize.config import SummarizeConfig
from relsum.summarize.job import run_summarize

logger = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]+")
PREFIX = "partition="


def partition_dir(out_dir: str | Path, partition: str) -> Path:
    """The folder of ``partition`` under ``out_dir`` (unsafe characters become ``_``)."""
    key = _UNSAFE.sub("_", partition.strip()).strip("._")
    if not key:
        raise InputError(f"partition {partition!r} has no usable characters")
    return Path(out_dir) / f"{PREFIX}{key}"


def _previous_partition(root: Path, current: Path) -> Path | None:
    """The latest committed partition that sorts before ``current`` (ISO dates sort by time)."""
    earlier = sorted(p for p in root.glob(f"{PREFIX}*") if p.name < current.name
                     and (p / "manifest.json").is_file())
    return earlier[-1] if earlier else None


def run(config: SummarizeConfig, partition: str | None = None) -> dict[str, Any]:
    """Summarize the catalog into ``config.out_dir`` (or its ``partition`` folder); returns the manifest."""
    if not partition:
        return run_summarize(config)
    root = Path(str(config.out_dir))
    target = partition_dir(root, partition)
    base = _previous_partition(root, target) if config.incremental else None
    logger.info("summarize partition %s (carry-over base: %s)", target.name, base)
    return run_summarize(dataclasses.replace(config, out_dir=str(target)), base_dir=base)
