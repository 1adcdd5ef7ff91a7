"""The calibration-set reader: judged golden pairs as (query, doc, label) rows.

Why a module of its own: the fidelity gate grades a fast path on these rows and the static int8 export
fits its activation scales on them (from the train sample); both sit above this reader, so neither has
to import the other for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas loads with the golden reader, not with this module
    import pandas as pd


def calibration_set(golden_dir: str | Path | None = None, max_pairs: int | None = None) -> pd.DataFrame:
    """Judged golden pairs as a DataFrame ``query_id, query, doc, label`` (doc = title | text).

    ``max_pairs`` keeps whole queries (NDCG needs all of a query's judged pairs), in query order.
    """
    from relsum.core.paths import SAMPLE_DIR
    from relsum.data.golden import load_golden
    from relsum.scoring.documents import join_title_text

    golden = load_golden(Path(golden_dir) if golden_dir else SAMPLE_DIR / "golden")
    pairs = golden.judgments.merge(golden.queries[["query_id", "query"]], on="query_id")
    pairs = pairs.merge(golden.catalog[["product_id", "title", "text"]], on="product_id")
    pairs["doc"] = [join_title_text(t, x) for t, x in zip(pairs["title"], pairs["text"], strict=True)]
    pairs = pairs.sort_values(["query_id", "product_id"], kind="stable").reset_index(drop=True)
    if max_pairs is not None and len(pairs) > max_pairs:
        sizes = pairs.groupby("query_id", sort=False).size().cumsum()
        keep = set(sizes[sizes <= max_pairs].index) or {sizes.index[0]}
        pairs = pairs[pairs["query_id"].isin(keep)].reset_index(drop=True)
    return pairs[["query_id", "query", "doc", "label"]]
