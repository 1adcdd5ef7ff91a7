"""The description-gap filter: keep the pairs where the description changes relevance.

For each (query, product) pair the one scorer gives r(q,t) (title only) and r(q,[t;d]) (title plus
description). The paper keeps pairs with a noticeable gap |r(q,[t;d]) - r(q,t)|: only there does a
good summary earn a reward that differs from a poor one. Where no human label exists the proxy label
is l = r(q,[t;d]).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from relsum.pairs.config import FilterConfig

logger = logging.getLogger(__name__)

DROP_EMPTY_TEXT = "empty description: a summary cannot add anything"
DROP_GAP = "gap below threshold"
DROP_TOP = "outside the top fraction by gap"


def label_and_gap(pairs: pd.DataFrame, r_title: np.ndarray, r_desc: np.ndarray) -> pd.DataFrame:
    """Attach r_title, r_desc, the gap, and the training label (human where present, else proxy)."""
    out = pairs.copy()
    out["r_title"] = np.asarray(r_title, dtype=np.float32)
    out["r_desc"] = np.asarray(r_desc, dtype=np.float32)
    out["gap"] = np.abs(out["r_desc"] - out["r_title"]).astype(np.float32)
    human = out["label"].notna() if "label" in out else pd.Series(False, index=out.index)
    out["human_label"] = out.get("label", np.nan)
    out["label"] = np.where(human, out["human_label"], out["r_desc"]).astype(np.float32)
    out["label_source"] = np.where(human, "human", "proxy")
    return out


def filter_pairs(scored: pd.DataFrame, config: FilterConfig) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Split scored pairs into (kept, dropped-with-reason, statistics); every row lands in one of the two."""
    has_text = scored["text"].fillna("").str.strip().ne("")
    reason = pd.Series("", index=scored.index, dtype=object)
    reason[~has_text] = DROP_EMPTY_TEXT
    if config.mode == "threshold":
        reason[has_text & (scored["gap"] < config.threshold)] = DROP_GAP
    else:
        scorable = scored.index[has_text]
        n_keep = int(np.ceil(config.top_fraction * len(scorable)))
        # Stable order (gap desc, then input order) so reruns keep the same pairs.
        order = scored.loc[scorable].sort_values("gap", ascending=False, kind="stable").index
        reason[order[n_keep:]] = DROP_TOP
    kept = scored[reason.eq("")].reset_index(drop=True)
    dropped = scored[reason.ne("")].assign(drop_reason=reason[reason.ne("")]).reset_index(drop=True)
    counts, edges = np.histogram(scored["gap"].to_numpy(dtype=float), bins=config.histogram_bins,
                                 range=(0.0, 1.0))
    stats = {
        "pairs_in": int(len(scored)),
        "kept": int(len(kept)),
        "dropped": int(len(dropped)),
        "dropped_by_reason": {str(k): int(v) for k, v in dropped["drop_reason"].value_counts().items()},
        "kept_label_source": {str(k): int(v) for k, v in kept["label_source"].value_counts().items()},
        "mode": config.mode,
        "threshold": config.threshold if config.mode == "threshold" else None,
        "top_fraction": config.top_fraction if config.mode == "top_fraction" else None,
        "gap_mean": float(scored["gap"].mean()) if len(scored) else None,
        "gap_histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
        "kept_products": int(kept["product_id"].nunique()) if len(kept) else 0,
        "kept_queries": int(kept["query_id"].nunique()) if len(kept) else 0,
    }
    logger.info("filter "
                "kept %d of %d pairs (%s)", stats["kept"], stats["pairs_in"], stats["dropped_by_reason"])
    return kept, dropped, stats
