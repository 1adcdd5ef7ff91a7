"""Team-draft interleaving, click attribution and the test statistics (pure functions)."""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from relsum.online import interleaving as il


class Coins(random.Random):
    """An RNG whose ``random()`` returns given values: < 0.5 means the variation picks first."""

    def __init__(self, flips):
        super().__init__(0)
        self.flips = iter(flips)

    def random(self):
        return next(self.flips)


def _random_pair(rng: random.Random, n: int) -> tuple[list[str], list[str]]:
    items = [f"p{i}" for i in range(n)]
    a, b = items[:], items[:]
    rng.shuffle(a)
    rng.shuffle(b)
    return a, b


def _teams(items):
    return [team for _, team in items]


def test_team_balance_at_every_prefix_over_many_rankings():
    rng = random.Random(123)
    for trial in range(500):
        control, variation = _random_pair(rng, rng.randint(1, 15))
        length = rng.choice([None, 3, 10])
        items = il.team_draft_interleave(control, variation, rng=random.Random(trial), length=length)
        assert len(items) == min(len(control), length or len(control))
        assert len({p for p, _ in items}) == len(items)
        c = v = 0
        for team in _teams(items):
            c, v = c + (team == il.CONTROL), v + (team == il.VARIATION)
            assert abs(c - v) <= 1
        # each team's items keep the order of its own ranking
        for team, ranking in ((il.CONTROL, control), (il.VARIATION, variation)):
            mine = [p for p, t in items if t == team]
            assert mine == sorted(mine, key=ranking.index)


def test_each_team_picks_first_about_half_the_time():
    n = 2000
    control, variation = [f"p{i}" for i in range(6)], [f"p{i}" for i in reversed(range(6))]
    first = [il.team_draft_interleave(control, variation, rng=il.query_rng(7, f"q{i}"))[0] for i in range(n)]
    k = sum(team == il.VARIATION for _, team in first)
    assert abs(k - n / 2) <= 4 * math.sqrt(n / 4)  # 4 binomial standard deviations
    for product, team in first:  # the first item is the first-picking team's top product
        assert product == (control[0] if team == il.CONTROL else variation[0])


def test_identical_lists_never_favour_either_team():
    ranking = [f"p{i}" for i in range(10)]
    outcomes = []
    clicks = random.Random(5)
    for i in range(3000):
        items = il.team_draft_interleave(ranking, ranking, rng=il.query_rng(0, f"q{i}"))
        assert [p for p, _ in items] == ranking  # the list shown is the shared ranking
        for k in range(0, 10, 2):  # each round gives one item to each team
            assert {items[k][1], items[k + 1][1]} == {il.CONTROL, il.VARIATION}
        # a position-biased user: clicks depend only on the position, never on the team
        clicked = [pos for pos in range(1, 11) if clicks.random() < 0.5 / pos]
        if clicked:
            outcomes.append(il.outcome(items, clicked_positions=clicked))
    stats = il.summarize_outcomes(outcomes)
    assert stats["wins"] + stats["losses"] > 1000
    assert stats["p_value"] > 0.001
    assert abs(stats["delta"]) < 0.05


def test_duplicates_across_lists_are_placed_once_hand_case():
    control, variation = ["a", "b", "c"], ["a", "c", "d"]
    # round 1: control first (0.9) takes a, variation skips a and takes c; round 2: variation first (0.1)
    items = il.team_draft_interleave(control, variation, rng=Coins([0.9, 0.1]))
    assert items == [("a", il.CONTROL), ("c", il.VARIATION), ("d", il.VARIATION), ("b", il.CONTROL)]
    items = il.team_draft_interleave(control, variation, rng=Coins([0.1, 0.9]))
    assert items == [("a", il.VARIATION), ("b", il.CONTROL), ("c", il.CONTROL), ("d", il.VARIATION)]


def test_exhausted_team_passes_and_other_keeps_picking():
    items = il.team_draft_interleave(["a"], ["b", "c", "d"], rng=Coins([0.9, 0.9]))
    assert items == [("a", il.CONTROL), ("b", il.VARIATION), ("c", il.VARIATION), ("d", il.VARIATION)]
    assert il.team_draft_interleave([], [], rng=random.Random(0)) == []
    assert il.team_draft_interleave(["a", "b"], ["b", "a"], rng=random.Random(0), length=0) == []
    assert len(il.team_draft_interleave(["a", "b", "c"], ["c", "b", "a"], rng=random.Random(0),
                                        length=2)) == 2


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="twice"):
        il.team_draft_interleave(["a", "a"], ["a"], rng=random.Random(0))
    with pytest.raises(TypeError, match="rng"):
        il.team_draft_interleave(["a"], ["a"], rng=0)
    with pytest.raises(ValueError, match="length"):
        il.team_draft_interleave(["a"], ["a"], rng=random.Random(0), length=-1)


def test_seeded_determinism_and_numpy_generator():
    control, variation = _random_pair(random.Random(1), 12)
    a = il.team_draft_interleave(control, variation, rng=il.query_rng(3, "q1"))
    assert a == il.team_draft_interleave(control, variation, rng=il.query_rng(3, "q1"))
    assert a == il.team_draft_interleave(control, variation, rng=il.query_rng(3, "q1"), length=None)
    seeds = {tuple(il.team_draft_interleave(control, variation, rng=il.query_rng(s, "q1")))
             for s in range(20)}
    assert len(seeds) > 1  # the seed matters
    g1 = il.team_draft_interleave(control, variation, rng=np.random.default_rng(4))
    assert g1 == il.team_draft_interleave(control, variation, rng=np.random.default_rng(4))


def test_rank_by_scores_descending_with_stable_ties():
    assert il.rank_by_scores(["a", "b", "c", "d"], [0.1, 0.5, 0.1, 0.9]) == ["d", "b", "a", "c"]
    assert il.rank_by_scores(["x", "y", "z"], np.float32([0.5, 0.5, 0.5])) == ["x", "y", "z"]
    with pytest.raises(ValueError, match="NaN"):
        il.rank_by_scores(["a", "b"], [0.1, float("nan")])
    with pytest.raises(ValueError, match="shape"):
        il.rank_by_scores(["a", "b"], [0.1])


ITEMS = [("a", il.CONTROL), ("b", il.VARIATION), ("c", il.VARIATION), ("d", il.CONTROL)]


def test_attribute_clicks_hand_cases():
    assert il.attribute_clicks(ITEMS, ["a"]) == (1, 0)
    assert il.attribute_clicks(ITEMS, ["b"]) == (0, 1)
    assert il.attribute_clicks(ITEMS, clicked_positions=[2, 3]) == (0, 2)
    assert il.attribute_clicks(ITEMS, ["a", "a", "d"], clicked_positions=[1]) == (2, 0)  # distinct items
    assert il.attribute_clicks(ITEMS) == (0, 0)
    with pytest.raises(ValueError, match="not in the interleaved list"):
        il.attribute_clicks(ITEMS, ["zzz"])
    for bad in (0, 5, 1.5):
        with pytest.raises(ValueError, match="position"):
            il.attribute_clicks(ITEMS, clicked_positions=[bad])


def test_outcome_and_ties():
    assert il.outcome(ITEMS, ["a"]) == il.CONTROL
    assert il.outcome(ITEMS, ["b", "c", "a"]) == il.VARIATION
    assert il.outcome(ITEMS, ["a", "b"]) == "tie"
    assert il.outcome(ITEMS) == "tie"  # the pipeline counts these as no_preference before calling outcome


def test_sign_test_against_hand_computation():
    # P(X >= 9 | n=10, p=1/2) = (C(10,9) + C(10,10)) / 2^10 = 11/1024; two-sided doubles it
    assert il.sign_test(9, 1) == pytest.approx(22 / 1024)
    assert il.sign_test(9, 1) == pytest.approx(binomtest(9, 10, 0.5).pvalue)
    assert il.sign_test(1, 9) == pytest.approx(il.sign_test(9, 1))
    assert il.sign_test(5, 5) == pytest.approx(1.0)
    assert il.sign_test(0, 0) == 1.0
    with pytest.raises(ValueError):
        il.sign_test(-1, 2)


def test_delta_score():
    assert il.delta_score(6, 2, 2) == pytest.approx(0.4)
    assert il.chapelle_delta(6, 2, 2) == pytest.approx((6 + 2 / 2) / 10 - 0.5)
    assert il.delta_score(0, 3, 1) == pytest.approx(-0.75)
    assert math.isnan(il.delta_score(0, 0, 0))
    with pytest.raises(ValueError):
        il.delta_score(1, -1, 0)


def test_summarize_outcomes_excludes_no_preference():
    stats = il.summarize_outcomes(["variation"] * 3 + ["control"] + ["tie"] + ["no_preference"] * 5)
    assert (stats["wins"], stats["losses"], stats["ties"], stats["no_preference"]) == (3, 1, 1, 5)
    assert stats["impressions"] == 10
    assert stats["delta"] == pytest.approx(2 / 5)
    with pytest.raises(ValueError, match="unknown outcome"):
        il.summarize_outcomes(["win"])


def test_match_events_resolves_and_rejects_with_reasons():
    export = pd.DataFrame({"experiment_id": "e1", "query_id": ["q1", "q1", "q2"], "position": [2, 1, 1],
                           "product_id": ["b", "a", "c"], "team": [il.VARIATION, il.CONTROL, il.CONTROL]})
    events = pd.DataFrame({
        "query_id": ["q1", "q1", "q1", "q9", "q1", "q1", "q2", None, "q1"],
        "impression_id": ["i1", "i1", "i1", "i2", "i1", "i1", "i1", "i3", "i4"],
        "event": ["click", "add_to_cart", "click", "click", "click", "hover", "click", "click", "impression"],
        "position": [2, None, "7", 1, 1, 1, 1, 1, None],
        "product_id": [None, "a", None, None, "b", None, None, None, None]})
    matched, rejects, lists = il.match_events(export, events)
    assert lists["q1"] == [("a", il.CONTROL), ("b", il.VARIATION)]
    assert matched.to_dict("records")[:2] == [
        {"query_id": "q1", "impression_id": "i1", "event": "click", "product_id": "b"},
        {"query_id": "q1", "impression_id": "i1", "event": "add_to_cart", "product_id": "a"}]
    assert matched["impression_id"].tolist() == ["i1", "i1", "i4"]
    reasons = dict(zip(rejects["row_number"], rejects["reason"], strict=True))
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7]
    assert reasons[2].startswith("position not in the interleaved list")
    assert reasons[3].startswith("unknown query")
    assert reasons[4].startswith("position and product_id disagree")
    assert reasons[5].startswith("unknown event type")
    assert reasons[6].startswith("conflicting query for impression")
    assert reasons[7].startswith("missing key: query_id")
    assert len(matched) + len(rejects) == len(events)
