import numpy as np
import pandas as pd
import pytest

from relsum.pairs.config import FilterConfig
from relsum.pairs.filter import DROP_EMPTY_TEXT, DROP_GAP, DROP_TOP, filter_pairs, label_and_gap


def _pairs():
    return pd.DataFrame({
        "query_id": ["q1", "q1", "q2", "q2", "q3"],
        "product_id": ["p1", "p2", "p3", "p4", "p5"],
        "text": ["red", "blue", "", "green", "big"],
        "label": [1.0, None, 0.5, None, None],
    })


def test_label_is_human_where_present_else_proxy():
    scored = label_and_gap(_pairs(), r_title=np.array([0.1, 0.5, 0.2, 0.3, 0.9]),
                           r_desc=np.array([0.8, 0.55, 0.2, 0.9, 0.2]))
    assert scored["label"].tolist() == pytest.approx([1.0, 0.55, 0.5, 0.9, 0.2])
    assert scored["label_source"].tolist() == ["human", "proxy", "human", "proxy", "proxy"]
    assert scored["gap"].tolist() == pytest.approx([0.7, 0.05, 0.0, 0.6, 0.7])


def test_threshold_mode_keeps_known_gaps_and_gives_reasons():
    scored = label_and_gap(_pairs(), np.array([0.1, 0.5, 0.2, 0.3, 0.9]),
                           np.array([0.8, 0.55, 0.2, 0.9, 0.2]))
    kept, dropped, stats = filter_pairs(scored, FilterConfig(threshold=0.5))
    assert sorted(kept["product_id"]) == ["p1", "p4", "p5"]
    reasons = dict(zip(dropped["product_id"], dropped["drop_reason"], strict=True))
    assert reasons == {"p2": DROP_GAP, "p3": DROP_EMPTY_TEXT}
    assert stats["kept"] + stats["dropped"] == stats["pairs_in"] == 5
    assert sum(stats["gap_histogram"]["counts"]) == 5


def test_top_fraction_mode_is_stable():
    scored = label_and_gap(_pairs(), np.array([0.1, 0.5, 0.2, 0.3, 0.9]),
                           np.array([0.8, 0.55, 0.2, 0.9, 0.2]))
    kept, dropped, _ = filter_pairs(scored, FilterConfig(mode="top_fraction", top_fraction=0.5))
    # 4 scorable pairs -> keep 2; gaps p1=0.7, p5=0.7 tie and stay in input order.
    assert kept["product_id"].tolist() == ["p1", "p5"]
    assert set(dropped.loc[dropped.drop_reason == DROP_TOP, "product_id"]) == {"p2", "p4"}


def test_config_checks():
    with pytest.raises(ValueError):
        FilterConfig(threshold=1.5)
    with pytest.raises(ValueError):
        FilterConfig(top_fraction=0)
