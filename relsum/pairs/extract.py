"""The (query, product) pairs of a search log: the shipped SQL, the one definition of "a pair".

Why here, in the library: the pairs build (``relsum pairs``) and best-of-N at catalog time
(:mod:`relsum.summarize.best_of`) both need the same deduplicated (query, product, label) set, so
training and serving see the same queries; with the function in the stage module the library had to
import the stage layer to get it. It takes plain values, not a stage config, for the same reason.
"""

from __future__ import annotations

import pandas as pd


def extract_pairs(catalog: pd.DataFrame, log: pd.DataFrame, *, start_date: str | None = None,
                  end_date: str | None = None,
                  include_undated: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run ``sql/extract_pairs.sql``: (pairs of the date range joined to the catalog, unmatched pairs).

    ``start_date`` is inclusive, ``end_date`` exclusive (YYYY-MM-DD; None = open); ``include_undated``
    keeps log rows without an ``event_date``. ``log`` columns ``label``, ``traffic`` and ``event_date``
    may be missing (read as null).
    """
    from relsum.data.sql import run_sql

    log = log.copy()
    for column in ("label", "traffic", "event_date"):
        if column not in log:
            log[column] = None
    log["label"] = pd.to_numeric(log["label"], errors="coerce")
    log["traffic"] = pd.to_numeric(log["traffic"], errors="coerce")
    log["event_date"] = pd.to_datetime(log["event_date"], errors="coerce").dt.date
    tables = {"search_log": log[["query_id", "query", "product_id", "label", "traffic", "event_date"]],
              "catalog": catalog[["product_id", "title", "text", "content_hash"]]}
    params = [start_date or "0001-01-01", end_date or "9999-12-31", include_undated]
    return run_sql("extract_pairs", tables, params), run_sql("count_unmatched_pairs", tables, params)
