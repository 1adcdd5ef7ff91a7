"""Every metric key relsum writes to ``metrics.json``, MLflow and the reports, named in one place.

Why: the keys were glued from strings in the registry, the train stage, the demo and the ablation;
a key spelled two ways breaks ``relsum compare`` and the gate silently (a missing metric reads as nan).
Readers and writers both call these functions, so a rename happens here once. The names themselves are
unchanged from before (existing MLflow runs stay readable).

Schemes
* Golden-set evaluation on a run (:mod:`relsum.lifecycle.registry`):
  ``<head>.<subset>.<metric>[.gain_pct][.lo|.hi]``
  where ``<head>`` is ``eval`` for the run's own adapter and ``baseline.<candidate>`` for the others;
  ``eval.<subset>.n_queries``.
* Groundedness: ``groundedness.<candidate>[.lo|.hi|.numbers]``.
* Held-out comparison (:func:`relsum.training.policy_eval.compare_policies`), JSON keys:
  ``[sampled_]<name>`` and ``[sampled_]<name>_ci95``; MLflow keys: ``heldout_<json key>`` and
  ``heldout_[sampled_]<name>_ci_low|high``;
  per label ``heldout_[sampled_]label_<l>_<field>``.
* Ablation parent run: ``<candidate>.full_r90p`` and ``<candidate>.full_ndcg5``.
* Pair-level measures (:func:`pair_key`): ``<head>.<subset>.<reward|pairwise_accuracy>[.lo|.hi]``.
* Paired differences vs the baseline (:func:`diff_key`): ``<head>.<subset>.<metric>.diff[.lo|.hi]`` and
  the minimum detectable effect ``<head>.<subset>.<metric>.diff.mde_p80_a05`` (power 80 %, alpha 0.05:
  the name carries the parameters, so an MDE at other settings is another key).
"""

from __future__ import annotations

SUBSETS = ("full", "tail")
EVAL_METRICS = ("ndcg_at_k", "recall_at_precision")
STATS = ("value", "lo", "hi")
OWN = "challenger"  # the candidate name of a run's own adapter in an evaluation handed to the registry

#: The pair-level measures beside the two ranking metrics (metrics.json ``pair_level`` / MLflow keys).
PAIR_METRICS = ("reward", "pairwise_accuracy")
#: Every measure with a paired difference against the baseline (metrics.json ``paired``).
PAIRED_METRICS = ("recall_at_precision", "ndcg_at_k", *PAIR_METRICS)

_SUFFIX = {"value": "", "lo": ".lo", "hi": ".hi"}
_SHORT = {"recall_at_precision": "r90p", "ndcg_at_k": "ndcg5"}


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; expected one of {list(allowed)}")


def eval_head(candidate: str = OWN) -> str:
    """``eval`` for the run's own adapter (``challenger``), ``baseline.<candidate>`` for any other."""
    return "eval" if candidate == OWN else f"baseline.{candidate}"


def eval_key(subset: str, metric: str, stat: str = "value", candidate: str = OWN, gain: bool = False) -> str:
    """``<head>.<subset>.<metric>[.gain_pct][.lo|.hi]``, e.g. ``eval.tail.ndcg_at_k.gain_pct.lo``."""
    _check(subset, SUBSETS, "subset")
    _check(metric, EVAL_METRICS, "metric")
    _check(stat, STATS, "stat")
    return f"{eval_head(candidate)}.{subset}.{metric}{'.gain_pct' if gain else ''}{_SUFFIX[stat]}"


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
    """``<candidate>.full_r90p`` / ``<candidate>.full_ndcg5`` on the ablation's parent run."""
    _check(metric, EVAL_METRICS, "metric")
    return f"{candidate}.full_{_SHORT[metric]}"


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
    _check(metric, PAIRED_METRICS, "metric")
    _check(stat, (*STATS, "mde"), "stat")
    tail = f".{mde_stat(power, alpha)}" if stat == "mde" else _SUFFIX[stat]
    return f"{eval_head(candidate)}.{subset}.{metric}.diff{tail}"
