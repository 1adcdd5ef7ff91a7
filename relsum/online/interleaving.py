"""Team-draft interleaving and its click analysis (pure functions, no I/O).

Why interleaving: an online A/B test of two rankers needs a lot of traffic because users differ more
than the rankers do. Interleaving shows *one* list that mixes both rankings to the same user, so
each impression is a paired comparison; it detects ranking differences with one to two orders of
magnitude less traffic (Chapelle, Joachims, Radlinski & Yue 2012, "Large-scale validation and
analysis of interleaved search evaluation", ACM TOIS).

Here the two rankers are the cross-encoder on the title alone, r(q, t) (``"control"``), and on the
title plus the generated summary, r(q, [t; s]) (``"variation"``).

Conventions used by the analysis (and by ``relsum.pipelines.interleaving``):

* credit of a team in one impression = number of *distinct* items of that team with at least one
  counted event (a double click on one item counts once);
* the team with more credit wins the impression; equal non-zero credit is a ``"tie"``;
* an impression without any counted event carries no preference: the pipeline counts it separately
  as *no-preference* and leaves it out of wins/losses/ties (the usual practice). :func:`outcome` on
  its own reports such an impression as ``"tie"``; callers that follow this convention drop them first;
* "wins" are variation wins and "losses" control wins, so a positive Δ favours the summaries.

The DataFrame helpers at the end (:func:`match_events`, :func:`rejects_frame`) are pure too: they
resolve logged events to interleaved items and give every unusable event a reason.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from relsum.data import contracts as dc
from relsum.data.contracts import as_id
from relsum.data.io import READ_ERROR_COL
from relsum.online.events import KNOWN_EVENTS

logger = logging.getLogger(__name__)

CONTROL, VARIATION = "control", "variation"
TEAMS = (CONTROL, VARIATION)
NO_PREFERENCE = "no_preference"
Outcome = Literal["control", "variation", "tie"]


def _check_ranking(name: str, ranking: Sequence[str]) -> list[str]:
    items = list(ranking)
    seen: set[str] = set()
    for item in items:
        if item in seen:
            raise ValueError(f"{name} ranking lists product {item!r} twice; a ranking must not repeat items")
        seen.add(item)
    return items


def team_draft_interleave(control: Sequence[str], variation: Sequence[str], *,
                          rng: random.Random | np.random.Generator,
                          length: int | None = None) -> list[tuple[str, str]]:
    """Interleave two rankings with team draft (Radlinski, Kurup & Joachims, CIKM 2008).

    Algorithm, like two captains picking players for their teams::

        I = []                                  # the interleaved list
        while len(I) < length and a team still has an item not in I:
            if one team has fewer picks: it picks next
            else: a fair coin decides which team picks next      # i.e. once per "round"
            the picking team appends its highest-ranked item that is not in I yet,
            and that item is credited to (belongs to) the picking team

    With equal pick counts a coin decides who starts the round; the other team then picks (it has
    fewer picks), so the counts are equal again and the next round flips a new coin. Hence each
    team's pick count differs by at most one at any prefix, and each team's items keep their own
    ranking's order. An item ranked by both lists goes to whichever team picks it first; the
    other team then skips it (it is "already in I"), which is how duplicates across lists are
    handled: every product appears once and belongs to exactly one team.

    Deviation from the paper: the paper stops as soon as *either* ranking is exhausted; here a team
    with no items left simply passes and the other keeps picking until *both* are exhausted or
    ``length`` is reached. When both rankings order the same candidate set (the relsum export) both
    run out at the same moment, so the two rules give the same lists.

    ``rng`` is a ``random.Random`` or ``numpy.random.Generator``; seed it for reproducible lists.
    Returns ``[(product_id, team)]`` with team ``"control"`` or ``"variation"``.
    """
    if length is not None and length < 0:
        raise ValueError(f"length must be >= 0 or None, got {length}")
    if not isinstance(rng, random.Random | np.random.Generator):
        raise TypeError(f"rng must be random.Random or numpy.random.Generator, got {type(rng).__name__}")
    lists = {CONTROL: _check_ranking(CONTROL, control), VARIATION: _check_ranking(VARIATION, variation)}
    limit = len(set(lists[CONTROL]) | set(lists[VARIATION]))
    if length is not None:
        limit = min(limit, length)
    pointer = {CONTROL: 0, VARIATION: 0}
    picks = {CONTROL: 0, VARIATION: 0}
    placed: set[str] = set()
    out: list[tuple[str, str]] = []

    def next_item(team: str) -> str | None:
        ranking, i = lists[team], pointer[team]
        while i < len(ranking) and ranking[i] in placed:
            i += 1
        pointer[team] = i
        return ranking[i] if i < len(ranking) else None

    while len(out) < limit:
        if picks[CONTROL] != picks[VARIATION]:
            team = CONTROL if picks[CONTROL] < picks[VARIATION] else VARIATION
        else:
            team = VARIATION if float(rng.random()) < 0.5 else CONTROL
        item = next_item(team)
        if item is None:  # this team is exhausted: the other one picks (it must have an item left)
            team = VARIATION if team == CONTROL else CONTROL
            item = next_item(team)
            assert item is not None, "limit counts only items that some ranking still holds"
        placed.add(item)
        picks[team] += 1
        out.append((item, team))
    return out


def query_rng(seed: int, query_id: str) -> random.Random:
    """A per-query RNG derived from sha256(seed, query_id): one query's list never depends on others."""
    digest = hashlib.sha256(f"relsum-interleave|{seed}|{query_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def rank_by_scores(product_ids: Sequence[str], scores: Sequence[float] | np.ndarray) -> list[str]:
    """Product ids by descending score; equal scores keep their input order (stable)."""
    ids = list(product_ids)
    values = np.asarray(scores, dtype=np.float64)
    if values.shape != (len(ids),):
        raise ValueError(f"got {len(ids)} product ids but scores of shape {values.shape}")
    if np.isnan(values).any():
        raise ValueError("scores contain NaN; cannot rank")
    order = np.argsort(-values, kind="stable")
    return [ids[i] for i in order]


def attribute_clicks(interleaved: Sequence[tuple[str, str]], clicked_products: Iterable[str] = (),
                     clicked_positions: Iterable[int] = ()) -> tuple[int, int]:
    """(control credit, variation credit): distinct clicked items of each team in one impression.

    Clicks are given as product ids and/or 1-based positions in ``interleaved`` (both may be given;
    a product named both ways counts once). A click on an item that is not in the list is an error:
    the pipeline rejects such events before it gets here.
    """
    team_of = {pid: team for pid, team in interleaved}
    clicked: set[str] = set()
    for pid in clicked_products:
        if pid not in team_of:
            raise ValueError(f"clicked product {pid!r} is not in the interleaved list")
        clicked.add(pid)
    for pos in clicked_positions:
        if isinstance(pos, bool) or int(pos) != pos or not 1 <= int(pos) <= len(interleaved):
            raise ValueError(f"clicked position {pos!r} is not in 1..{len(interleaved)}")
        clicked.add(interleaved[int(pos) - 1][0])
    control = sum(team_of[p] == CONTROL for p in clicked)
    return control, len(clicked) - control


def outcome_from_credit(control_credit: int, variation_credit: int) -> Outcome:
    """The team with more credit wins; equal credit (including 0-0) is a tie."""
    if variation_credit > control_credit:
        return VARIATION
    if control_credit > variation_credit:
        return CONTROL
    return "tie"


def outcome(interleaved: Sequence[tuple[str, str]], clicked_products: Iterable[str] = (),
            clicked_positions: Iterable[int] = ()) -> Outcome:
    """Winner of one impression: ``"control"``, ``"variation"`` or ``"tie"`` (see module conventions)."""
    return outcome_from_credit(*attribute_clicks(interleaved, clicked_products, clicked_positions))


def sign_test(wins: int, losses: int) -> float:
    """Two-sided sign test p-value of wins vs losses under H0 "each is equally likely"; ties ignored.

    Exact binomial test (``scipy.stats.binomtest(wins, wins + losses, 0.5)``); 1.0 with no decided
    impressions. It treats impressions as independent, which repeated users or queries weaken.
    """
    from scipy.stats import binomtest

    if wins < 0 or losses < 0:
        raise ValueError(f"wins and losses must be >= 0, got {wins}, {losses}")
    if wins + losses == 0:
        return 1.0
    return float(binomtest(int(wins), int(wins + losses), 0.5, alternative="two-sided").pvalue)


def delta_score(wins: int, losses: int, ties: int) -> float:
    """Δ = (wins - losses) / (wins + losses + ties), variation as B; in [-1, 1], > 0 favours the variation.

    This is the Δ_AB of Chapelle, Joachims, Radlinski & Yue (2012) *doubled*: they define
    Δ_AB = (wins_B + ties / 2) / (wins + losses + ties) - 1/2 = (wins - losses) / (2 n), in
    [-1/2, 1/2]. The two have the same sign and significance; :func:`chapelle_delta` gives theirs.
    No-preference impressions (no counted event) are not part of the denominator. NaN when all
    three counts are zero.
    """
    if min(wins, losses, ties) < 0:
        raise ValueError(f"counts must be >= 0, got {wins}, {losses}, {ties}")
    total = wins + losses + ties
    return (wins - losses) / total if total else math.nan


def chapelle_delta(wins: int, losses: int, ties: int) -> float:
    """Δ_AB exactly as Chapelle et al. (2012) define it: ``(wins + ties/2) / n - 1/2`` (half of
    :func:`delta_score`)."""
    return delta_score(wins, losses, ties) / 2


def summarize_outcomes(outcomes: Iterable[str]) -> dict[str, float | int]:
    """Counts and statistics of impression outcomes (``"variation"``, ``"control"``, ``"tie"``,
    ``"no_preference"``).

    ``wins`` = variation wins, ``losses`` = control wins; ``no_preference`` impressions are counted but
    kept out of Δ and the sign test (module conventions).
    """
    counts = {VARIATION: 0, CONTROL: 0, "tie": 0, NO_PREFERENCE: 0}
    for o in outcomes:
        if o not in counts:
            raise ValueError(f"unknown outcome {o!r}; expected one of {sorted(counts)}")
        counts[o] += 1
    wins, losses, ties = counts[VARIATION], counts[CONTROL], counts["tie"]
    return {"impressions": sum(counts.values()), "wins": wins, "losses": losses, "ties": ties,
            "no_preference": counts[NO_PREFERENCE], "wins_minus_losses": wins - losses,
            "delta": delta_score(wins, losses, ties), "delta_chapelle": chapelle_delta(wins, losses, ties),
            "p_value": sign_test(wins, losses)}


def rejects_frame(df: pd.DataFrame, reasons: dict[int, list[str]]) -> pd.DataFrame:
    """Rejected rows with their original values, ``row_number`` and ``reason`` (problems joined by "; ")."""
    idx = sorted(reasons)
    out = df.iloc[idx].copy()
    out.insert(0, "row_number", idx)
    out["reason"] = ["; ".join(reasons[i]) for i in idx]
    return out.reset_index(drop=True)


def _position(value: Any) -> int | None | str:
    """A 1-based position, None when missing, or an error text."""
    key = as_id(value)
    if key is None:
        return None
    try:
        number = float(key)
    except ValueError:
        return f"position {key!r} is not a number"
    return int(number) if number.is_integer() and number >= 1 else f"position {key!r} is not an integer >= 1"


def match_events(export: pd.DataFrame, events: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Resolve each event to (query_id, impression_id, event, product_id); rejects carry a reason.

    Returns the matched events, the rejects and the interleaved list per query_id.
    """
    lists = {str(q): list(zip(g["product_id"].astype(str), g["team"], strict=True))
             for q, g in export.sort_values(["query_id", "position"]).groupby("query_id", sort=False)}
    experiments = set(export["experiment_id"].astype(str))
    reasons: dict[int, list[str]] = {}
    owner: dict[str, str] = {}
    matched = []
    cols = [events.get(c, pd.Series([None] * len(events))) for c in
            ("query_id", "impression_id", "event", "position", "product_id", "experiment_id", READ_ERROR_COL)]
    for i, (q, imp, ev, pos_raw, p_raw, exp, read_error) in enumerate(zip(*cols, strict=True)):
        qid, iid, pid, ev = as_id(q), as_id(imp), as_id(p_raw), as_id(ev)
        # a short, long or invalid line: its fields cannot be trusted, whatever they parse to
        problems = [f"{dc.R_READ}: {read_error}"] if isinstance(read_error, str) else []
        problems += [f"{dc.R_MISSING_KEY}: {c}" for c, v in (("query_id", qid), ("impression_id", iid))
                     if v is None]
        if ev not in KNOWN_EVENTS:
            problems.append(f"unknown event type: {ev!r} (expected one of {list(KNOWN_EVENTS)})")
        if as_id(exp) is not None and as_id(exp) not in experiments:
            problems.append(f"other experiment: {as_id(exp)!r} is not in the export ({sorted(experiments)})")
        if qid is not None and qid not in lists:
            problems.append(f"{dc.R_UNKNOWN_QUERY}: query_id not in the export")
        if not problems and owner.setdefault(iid, qid) != qid:
            problems.append(f"conflicting query for impression: {iid!r} belongs to query_id {owner[iid]!r}")
        if not problems and ev != "impression":
            items = lists[qid]
            pos = _position(pos_raw)
            if isinstance(pos, str):
                problems.append(f"bad position: {pos}")
            elif pos is not None and pos > len(items):
                problems.append(f"position not in the interleaved list: {pos} > list length {len(items)}")
            elif pos is not None and pid is not None and items[pos - 1][0] != pid:
                problems.append(f"position and product_id disagree: position {pos} "
                                f"holds {items[pos - 1][0]!r}")
            elif pos is None and pid is None:
                problems.append(f"{dc.R_MISSING_KEY}: position or product_id")
            elif pos is None and pid not in {p for p, _ in items}:
                problems.append(f"product not in the interleaved list: {pid!r}")
            elif pos is not None:
                pid = items[pos - 1][0]
        if problems:
            reasons[i] = problems
        else:
            matched.append((qid, iid, ev, pid if ev != "impression" else None))
    frame = pd.DataFrame(matched, columns=["query_id", "impression_id", "event", "product_id"])
    return frame, rejects_frame(events.reset_index(drop=True), reasons), lists
