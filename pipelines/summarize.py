"""Stage ``summarize``: write a summary for every catalog product (thin entry point for the CLI and DAGs).

``run(config, partition=None)`` runs :func:`relsum.summarize.job.run_summarize`. With a ``partition``
(e.g. an Airflow data-interval key such as ``2024-05-01``) the output goes to
``<out_dir>/partition=<key>/``, so a daily DAG writes one partition per interval; rerunning the same
partition is idempotent (resumes an interrupted run, or returns the committed manifest when the
catalog is unchanged). With ``incremental``, a new partition carries over unchanged products from
the latest earlier committed partition, so each day only generates what changed.

Command line (used by tests and ad-hoc runs)::

    python -m relsum.pipelines.summarize config.yaml [key=value ...] [--partition KEY]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

from relsum.core.config import load_config
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m "
                                          "relsum.pipelines.summarize", description=__doc__.split("\n")[0])
    parser.add_argument("config", nargs="?", help="YAML config (SummarizeConfig fields)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    parser.add_argument("--partition", default=None, help="output partition key (e.g. a data-interval date)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        manifest = run(load_config(SummarizeConfig, args.config, args.overrides), args.partition)
    except Exception as exc:
        from relsum.cli import user_error_line

        line = user_error_line(exc)
        if line is None:
            raise
        print(f"relsum summarize: error: {line}", file=sys.stderr)  # same one line as `relsum summarize`
        return 2
    print(json.dumps({"run_id": manifest["run_id"], "counts": manifest["counts"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
