"""Every metric key relsum writes to ``metrics.json``, MLflow and the reports, named in one place.

Why: the keys were glued from strings in the registry, the train stage, the demo and the ablation;
a key spelled two ways breaks ``relsum compare`` and the gate silently (a missing metric reads as nan).
Readers and writers both call these functions, so a rename happens here once.

Ranking metrics carry their cutoff in their name, as ``ir_measures`` / ``ranx`` name their measures:
``ndcg@5`` is NDCG at k = 5, ``r@90p`` the recall at 90 % precision. ``k`` and ``min_precision`` are
settings, so a run evaluated at k = 10 gets other keys than one at k = 5 and is never compared with it
unnoticed (``relsum compare`` and the promotion gate refuse mixed cutoffs). One pair of functions builds
and parses these names: :func:`metric_name` / :func:`parse_metric_name`; :func:`metric_label` gives the
report label (``NDCG@5``, ``R@90P``).

MLflow refuses ``@`` in metric keys (``mlflow.utils.validation``: alphanumerics, ``_ - . / :`` and
spaces), so at the MLflow boundary, and only there, :func:`mlflow_key` spells ``@`` as ``_at_``
(``eval.full.ndcg@5.lo`` is logged as ``eval.full.ndcg_at_5.lo``; :func:`from_mlflow_key` reads it back).
``metrics.json``, the reports and every dict in the code use ``ndcg@5``.

Schemes (``<metric>``: a ranking metric name such as ``ndcg@5`` or ``r@90p``)
* Golden-set evaluation on a run (:mod:`relsum.lifecycle.registry`):
  ``<head>.<subset>.<metric>[.gain_pct][.lo|.hi]``
  where ``<head>`` is ``eval`` for the run's own adapter and ``baseline.<candidate>`` for the others;
  ``eval.<subset>.n_queries``.
* Groundedness: ``groundedness.<candidate>[.lo|.hi|.numbers]``.
* Held-out comparison (:func:`relsum.training.policy_eval.compare_policies`), JSON keys:
  ``[sampled_]<name>`` and ``[sampled_]<name>_ci95``; MLflow keys: ``heldout_<json key>`` and
  ``heldout_[sampled_]<name>_ci_low|high``;
  per label ``heldout_[sampled_]label_<l>_<field>``.
* Ablation parent run: ``<candidate>.full.<metric>``.
* Pair-level measures (:func:`pair_key`): ``<head>.<subset>.<reward|pairwise_accuracy>[.lo|.hi]``.
* Paired differences vs the baseline (:func:`diff_key`): ``<head>.<subset>.<metric>.diff[.lo|.hi]`` and
  the minimum detectable effect ``<head>.<subset>.<metric>.diff.mde_p80_a05`` (power 80 %, alpha 0.05:
  the name carries the parameters, so an MDE at other settings is another key).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from relsum.core.errors import InputError

SUBSETS = ("full", "tail")
#: The ranking measures, each with the one parameter its name carries.
RANKING_MEASURES = {"r": "min_precision", "ndcg": "k"}
STATS = ("value", "lo", "hi")
OWN = "challenger"  # the candidate name of a run's own adapter in an evaluation handed to the registry

#: The pair-level measures beside the two ranking metrics (metrics.json ``pair_level`` / MLflow keys).
PAIR_METRICS = ("reward", "pairwise_accuracy")

_SUFFIX = {"value": "", "lo": ".lo", "hi": ".hi"}
_NDCG = re.compile(r"ndcg@([1-9][0-9]*)")
_RECALL = re.compile(r"r@([0-9]+(?:\.[0-9]+)?)p")
_MLFLOW_AT = "_at_"


def metric_name(measure: str, *, k: int | None = None, min_precision: float | None = None) -> str:
    """``metric_name("ndcg", k=5) -> "ndcg@5"``, ``metric_name("r", min_precision=0.9) -> "r@90p"``.

    The inverse of :func:`parse_metric_name`; a parameter the name cannot spell exactly (a
    ``min_precision`` with more than 6 significant digits in percent) is refused, so every name parses
    back to the setting it came from."""
    if measure == "ndcg":
        if min_precision is not None or isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"ndcg takes one integer cutoff k >= 1, got k={k!r}, "
                             f"min_precision={min_precision!r}")
        return f"ndcg@{k}"
    if measure == "r":
        if k is not None or min_precision is None or not 0.0 < float(min_precision) <= 1.0:
            raise ValueError(f"r takes one min_precision in (0, 1], got min_precision={min_precision!r}, "
                             f"k={k!r}")
        name = f"r@{100 * float(min_precision):g}p"
        if "e" in name or parse_metric_name(name)[1]["min_precision"] != float(min_precision):
            raise ValueError(f"min_precision {min_precision!r} cannot be named exactly; use at most "
                             "6 significant digits in percent (e.g. 0.9 or 0.925)")
        return name
    raise ValueError(f"unknown ranking measure {measure!r}; expected one of {list(RANKING_MEASURES)}")


def parse_metric_name(name: str) -> tuple[str, dict[str, Any]]:
    """``"ndcg@5" -> ("ndcg", {"k": 5})``, ``"r@90p" -> ("r", {"min_precision": 0.9})``.

    A malformed name (``ndcg_at_k``, ``ndcg@0``, ``r@90``, ``r@120p``) is an :class:`InputError` naming
    the two accepted forms."""
    if isinstance(name, str):
        if m := _NDCG.fullmatch(name):
            return "ndcg", {"k": int(m.group(1))}
        if (m := _RECALL.fullmatch(name)) and 0.0 < float(m.group(1)) <= 100.0:
            return "r", {"min_precision": float(m.group(1)) / 100.0}
    raise InputError(f"malformed metric name {name!r}: expected ndcg@<k> (k >= 1, e.g. ndcg@5) or "
                     "r@<percent>p (recall at that precision, e.g. r@90p)")


def is_ranking_metric(name: str) -> bool:
    """Whether ``name`` parses as a ranking metric name (no error)."""
    try:
        parse_metric_name(name)
    except InputError:
        return False
    return True


def ranking_metrics(k: int = 5, min_precision: float = 0.9) -> tuple[str, str]:
    """The two ranking metric names of an evaluation, R@P first: ``("r@90p", "ndcg@5")``."""
    return metric_name("r", min_precision=min_precision), metric_name("ndcg", k=k)


def metrics_of(config: Mapping[str, Any]) -> tuple[str, str]:
    """:func:`ranking_metrics` of an evaluation's ``config`` (``metrics.json``: ``k``, ``min_precision``)."""
    return ranking_metrics(int(config["k"]), float(config["min_precision"]))


def paired_metrics(config: Mapping[str, Any]) -> tuple[str, ...]:
    """Every measure with a paired difference against the baseline (metrics.json ``paired``)."""
    return (*metrics_of(config), *PAIR_METRICS)


def metric_label(name: str) -> str:
    """The report label of a ranking metric: ``ndcg@5 -> NDCG@5``, ``r@90p -> R@90P``."""
    parse_metric_name(name)
    return name.upper()


def mlflow_key(key: str) -> str:
    """A key as MLflow stores it: ``@`` (refused by MLflow) spelled ``_at_``: ``eval.full.ndcg_at_5``."""
    return key.replace("@", _MLFLOW_AT)


def from_mlflow_key(key: str) -> str:
    """The inverse of :func:`mlflow_key` on relsum's keys: ``eval.full.r_at_90p.lo -> eval.full.r@90p.lo``."""
    return key.replace(_MLFLOW_AT, "@")


def check_same_cutoffs(named: Mapping[str, Iterable[str]], what: str) -> None:
    """Refuse, in one line (:class:`InputError`), to compare evaluations whose ranking metrics differ.

    ``named``: ``{who: metric names}`` (``{"run a1b2": ["r@90p", "ndcg@5"], ...}``); an empty entry (no
    evaluation) is left out of the check."""
    found = {who: tuple(sorted(set(ms))) for who, ms in named.items() if ms}
    if len(set(found.values())) > 1:
        listed = "; ".join(f"{who}: {', '.join(ms)}" for who, ms in found.items())
        raise InputError(f"cannot {what}: their metrics carry different cutoffs ({listed}); evaluate them "
                         "with the same k and min_precision")


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; expected one of {list(allowed)}")


def _check_metric(metric: str, pair: bool = False) -> None:
    if not (is_ranking_metric(metric) or (pair and metric in PAIR_METRICS)):
        raise ValueError(f"unknown metric {metric!r}; expected ndcg@<k> or r@<percent>p"
                         + (f" or one of {list(PAIR_METRICS)}" if pair else ""))


def eval_head(candidate: str = OWN) -> str:
    """``eval`` for the run's own adapter (``challenger``), ``baseline.<candidate>`` for any other."""
    return "eval" if candidate == OWN else f"baseline.{candidate}"


def eval_key(subset: str, metric: str, stat: str = "value", candidate: str = OWN, gain: bool = False) -> str:
    """``<head>.<subset>.<metric>[.gain_pct][.lo|.hi]``, e.g. ``eval.tail.ndcg@5.gain_pct.lo``."""
    _check(subset, SUBSETS, "subset")
    _check_metric(metric)
    _check(stat, STATS, "stat")
    return f"{eval_head(candidate)}.{subset}.{metric}{'.gain_pct' if gain else ''}{_SUFFIX[stat]}"


def eval_metric_names(keys: Iterable[str], candidate: str = OWN) -> tuple[str, ...]:
    """The ranking metrics a run carries for ``candidate`` (its value keys ``<head>.<subset>.<metric>`` in
    any subset), read from its keys as MLflow stores them or as named here; R@P first, then by cutoff."""
    found = set()
    for key in map(from_mlflow_key, keys):
        for subset in SUBSETS:
            prefix = f"{eval_head(candidate)}.{subset}."
            if key.startswith(prefix) and is_ranking_metric(key[len(prefix):]):
                found.add(key[len(prefix):])
    order = list(RANKING_MEASURES)

    def rank(name: str) -> tuple[int, float]:
        measure, params = parse_metric_name(name)
        return order.index(measure), float(params[RANKING_MEASURES[measure]])

    return tuple(sorted(found, key=rank))


def n_queries_key(subset: str, candidate: str = OWN) -> str:
    """``<head>.<subset>.n_queries``: the number of queries behind a subset's figures."""
    _check(subset, SUBSETS, "subset")
    return f"{eval_head(candidate)}.{subset}.n_queries"


def groundedness_key(candidate: str, stat: str = "value") -> str:
    """``groundedness.<candidate>[.lo|.hi|.numbers]`` (``numbers``: share of numbers found in the source)."""
    _check(stat, (*STATS, "numbers"), "stat")
    return f"groundedness.{candidate}" + ("" if stat == "value" else f".{stat}")


def heldout_key(name: str, sampled: bool = False, ci: bool = False) -> str:
    """JSON key of :func:`relsum.training.policy_eval.compare_policies`: ``[sampled_]<name>[_ci95]``."""
    return f"{'sampled_' if sampled else ''}{name}{'_ci95' if ci else ''}"


def heldout_metric(key: str, side: str | None = None) -> str:
    """MLflow key of a held-out figure: ``heldout_<key>``, or ``heldout_<key>_ci_low|high`` for a CI end."""
    if side is None:
        return f"heldout_{key}"
    _check(side, ("low", "high"), "CI side")
    return f"heldout_{key}_ci_{side}"


def label_shift_metric(label: float, field: str, sampled: bool = False) -> str:
    """``heldout_[sampled_]label_<l>_<field>``, field e.g. ``shift``, ``shift_ci_low``, ``score_trained``."""
    return f"heldout_{'sampled_' if sampled else ''}label_{label:g}_{field}"


def ablation_key(candidate: str, metric: str) -> str:
    """``<candidate>.full.<metric>`` (``paper_gated.full.r@90p``) on the ablation's parent run."""
    _check_metric(metric)
    return f"{candidate}.full.{metric}"


def pair_metric_names(positive: float = 1.0, negative: float = 0.0) -> dict[str, str]:
    """Display names of :data:`PAIR_METRICS`, with the labels the pairwise accuracy compares."""
    return {"reward": "training reward",  # −|r − l|; no pipes: the names head markdown tables
            "pairwise_accuracy": f"pairwise accuracy ({positive:g} vs {negative:g})"}


def mde_stat(power: float = 0.8, alpha: float = 0.05) -> str:
    """``mde_p80_a05``: the key of a minimum detectable effect names its power and (two-sided) alpha."""
    if not (0.0 < power < 1.0 and 0.0 < alpha < 1.0):
        raise ValueError(f"power and alpha must be in (0, 1), got {power}, {alpha}")
    return f"mde_p{100 * power:g}_a{f'{alpha:g}'.removeprefix('0.')}"


def pair_key(subset: str, metric: str, stat: str = "value", candidate: str = OWN) -> str:
    """``<head>.<subset>.<metric>[.lo|.hi]`` of a pair-level measure (``eval.full.pairwise_accuracy``)."""
    _check(subset, SUBSETS, "subset")
    _check(metric, PAIR_METRICS, "metric")
    _check(stat, STATS, "stat")
    return f"{eval_head(candidate)}.{subset}.{metric}{_SUFFIX[stat]}"


def diff_key(subset: str, metric: str, stat: str = "value", candidate: str = OWN, power: float = 0.8,
             alpha: float = 0.05) -> str:
    """``<head>.<subset>.<metric>.diff[.lo|.hi|.mde_p80_a05]``: a paired difference vs the baseline
    (in the metric's units) or its minimum detectable effect (``stat="mde"``)."""
    _check(subset, SUBSETS, "subset")
    _check_metric(metric, pair=True)
    _check(stat, (*STATS, "mde"), "stat")
    tail = f".{mde_stat(power, alpha)}" if stat == "mde" else _SUFFIX[stat]
    return f"{eval_head(candidate)}.{subset}.{metric}.diff{tail}"
