"""Deployment gate: hand-made scores give the expected keep/fallback decisions and coverage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from relsum.lifecycle.config import SummaryGateConfig
from relsum.lifecycle.gate import gate_section, gate_summaries


class TableScorer:
    """A scorer whose scores are written down in the test (the real Scorer is exercised below)."""

    fingerprint = None  # no stable identity: a table, not weights

    def __init__(self, table: dict[tuple[str, str], float]):
        self.table = table

    def score(self, queries, titles, texts=None):
        texts = texts or [None] * len(queries)
        return np.array([self.table[(q, t or "")] for q, t in zip(queries, texts, strict=True)],
                        dtype=np.float32)


PAIRS = pd.DataFrame({"query": ["q1", "q2", "q1", "q2", "q3", "q1"],
                      "product_id": ["a", "a", "b", "b", "c", "e"],
                      "title": ["A", "A", "B", "B", "C", "E"]})
SUMMARIES = pd.Series({"a": "sa", "b": "sb", "c": "sc", "d": "sd", "e": ""})
# a: mean +0.025, min -0.15
SCORES = {("q1", ""): 0.5, ("q1", "sa"): 0.7, ("q2", ""): 0.5, ("q2", "sa"): 0.35,
          ("q1", "sb"): 0.2, ("q2", "sb"): 0.6,  # b: mean -0.1
          ("q3", ""): 0.4, ("q3", "sc"): 0.38}  # c: -0.02


def test_mean_rule_on_hand_made_case():
    res = gate_summaries(PAIRS, SUMMARIES, TableScorer(SCORES), SummaryGateConfig(margin=0.0, rule="mean"))
    keep = dict(zip(res.decisions["product_id"], res.decisions["keep"], strict=True))
    assert keep == {"a": True, "b": False, "c": False, "d": False}  # d: no held-out query; e: no summary
    assert res.coverage == pytest.approx(1 / 4)
    assert res.summaries.to_dict() == {"a": "sa", "b": "", "c": "", "d": "", "e": ""}
    assert res.stats["no_heldout_query"] == 1 and res.stats["hurts"] == 2


def test_margin_all_rule_and_unjudged():
    loose = gate_summaries(PAIRS, SUMMARIES, TableScorer(SCORES),
                           SummaryGateConfig(margin=0.05, keep_unjudged=True))
    assert loose.stats["kept"] == 3 and loose.coverage == pytest.approx(3 / 4)  # a, c (within margin), d
    strict = gate_summaries(PAIRS, SUMMARIES, TableScorer(SCORES), SummaryGateConfig(margin=0.05, rule="all"))
    assert strict.stats["kept"] == 1 and strict.summaries["c"] == "sc"  # a fails on q2 (-0.15)
    assert "| x | 25.0% |" in gate_section({"x": strict})


def test_gate_with_the_real_scorer(tiny_cross_encoder_dir):
    from relsum.scoring.scorer import Scorer

    scorer = Scorer(tiny_cross_encoder_dir)
    pairs = pd.DataFrame({"query": ["usb cable", "black headphones", "usb cable"],
                          "product_id": ["p", "p", "q"], "title": ["Cable", "Cable", "Headset"]})
    summaries = pd.Series({"p": "usb c braided 1 m", "q": "over-ear, black, bluetooth"})
    res = gate_summaries(pairs, summaries, scorer, SummaryGateConfig())
    diff = (scorer.score(pairs["query"].tolist(), pairs["title"].tolist(),
                         pairs["product_id"].map(summaries).tolist())
            - scorer.score(pairs["query"].tolist(), pairs["title"].tolist()))
    expected = {"p": diff[:2].mean() >= 0, "q": diff[2] >= 0}
    assert dict(zip(res.decisions["product_id"], res.decisions["keep"], strict=True)) == expected
    assert res.coverage == pytest.approx(np.mean(list(expected.values())))
