"""What an evaluation can detect: minimum detectable effects and two pair-level measures with more power.

A golden set of a few dozen queries gives NDCG@5 intervals that look precise and detect only large
changes: with 45 queries a paired t-test at 80 % power (alpha 0.05, two-sided) finds a true change of
about 0.43 sigma_d, sigma_d the spread of the per-query differences (0.15-0.20 for NDCG@5). So every
paired comparison (candidate - baseline, per subset) gets its minimum detectable effect (MDE), and a
difference below it, or with a CI that includes 0, is printed as "below what this set can detect".

* MDE of a paired t-test with ``n`` queries: the standardized effect ``d`` solving
  ``P(|T| > t_{1-alpha/2, n-1}) = power`` with ``T`` noncentral t (``df = n - 1``, ``nc = d sqrt(n)``),
  times ``sigma_d`` (:func:`standardized_mde`, :func:`mde`; equal to statsmodels'
  ``TTestPower().solve_power`` wherever its solver converges, which the tests check).
* ``sigma_d`` of a mean over pairs (reward, pairwise accuracy: queries weigh by their pair counts) is
  the delta-method spread of the per-query differences ``z_q = (a_q - D w_q) Q / W`` (``a_q`` the
  query's summed difference, ``w_q`` its pairs, ``W = sum w_q``, ``D = sum a_q / W``), so the test is
  the one on the difference actually reported. NDCG@k: ``w_q = 1`` on the queries where it is defined.
* R@P has no per-query values: ``sigma_d = se_boot sqrt(n)`` from the bootstrap standard error of the
  paired difference (a normal approximation stated in the report).
* Pair-level measures, paired against the baseline with bootstrap CIs over queries (the resamples of
  :func:`relsum.evaluation.bootstrap.paired_bootstrap`): the training reward ``-|r - l|`` and the
  within-query pairwise accuracy (:func:`relsum.metrics.ranking.pairwise_accuracy`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from relsum.evaluation.bootstrap import Interval, percentile_interval, ratio_replicates, resample_counts
from relsum.metrics import names
from relsum.metrics.ranking import per_query_ndcg_at_k, per_query_pairwise_accuracy

logger = logging.getLogger(__name__)

POWER = 0.8
ALPHA = 0.05
BELOW = "below what this set can detect"


def paired_t_power(effect_size: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired (one-sample) t-test for a standardized effect ``d = delta / sigma_d``."""
    from scipy import stats

    df, nc = n - 1, effect_size * math.sqrt(n)
    crit = stats.t.ppf(1.0 - alpha / 2.0, df)
    lower = stats.nct.cdf(-crit, df, nc)  # the wrong-sign rejections; scipy gives nan far in the tail
    if not math.isfinite(lower):
        lower = max(0.0, 1.0 - stats.nct.sf(-crit, df, nc))
    return float(stats.nct.sf(crit, df, nc) + lower)


def standardized_mde(n: int, power: float = POWER, alpha: float = ALPHA) -> float:
    """The smallest ``d = delta / sigma_d`` a paired t-test over ``n`` queries finds with ``power``.

    nan for fewer than two queries (no spread, no test)."""
    from scipy.optimize import brentq

    if not (0.0 < power < 1.0 and 0.0 < alpha < 1.0):
        raise ValueError(f"power and alpha must be in (0, 1), got {power}, {alpha}")
    if n < 2 or power <= alpha:
        return float("nan")
    hi = 1.0
    while paired_t_power(hi, n, alpha) < power:  # power grows with d; bracket the root
        hi *= 2.0
    return float(brentq(lambda d: paired_t_power(d, n, alpha) - power, 0.0, hi, xtol=1e-10))


def mde(sd_diff: float, n: int, power: float = POWER, alpha: float = ALPHA) -> float:
    """Minimum detectable effect in the metric's units: ``standardized_mde(n) * sd_diff``."""
    return standardized_mde(n, power, alpha) * sd_diff if math.isfinite(sd_diff) else float("nan")


def verdict(value: float, lo: float, hi: float, min_effect: float) -> bool | None:
    """True when a difference is a finding: ``|value| >= MDE`` and the CI excludes 0.

    None when the difference itself is undefined; False when it is defined but its CI or MDE is not
    (fewer than two queries): a difference nothing can test is no finding either.
    """
    if not math.isfinite(value):
        return None
    if any(not math.isfinite(x) for x in (lo, hi, min_effect)):
        return False
    return abs(value) >= min_effect and (lo > 0.0 or hi < 0.0)


def _summary(below: list[str], above: list[str], yes: str = "yes") -> str:
    """The ``detectable`` cell: what is below what the set can detect, then what is not."""
    return "; ".join(([f"{BELOW}: " + ", ".join(below)] if below else [])
                     + ([f"{yes}: " + ", ".join(above)] if above else [])) or "n/a"


def _ratio_sd(a: np.ndarray, w: np.ndarray) -> tuple[float, int]:
    """(delta-method sigma_d of ``sum a / sum w`` over queries with ``w > 0``, number of those queries)."""
    keep = w > 0
    a, w = a[keep], w[keep]
    n = len(a)
    if n < 2:
        return float("nan"), n
    total = w.sum()
    z = (a - a.sum() / total * w) * n / total
    return float(z.std(ddof=1)), n


def _entry(value: float, ci: tuple[float, float], sd: float, n: int, power: float, alpha: float) -> dict:
    m = mde(sd, n, power, alpha)
    return {**Interval(value, *ci).as_dict(), "sd_diff": sd, "n_queries": int(n), "mde": m,
            "detectable": verdict(value, *ci, m)}


def paired_measures(df: pd.DataFrame, candidates: list[str], baseline: str, boot: Mapping[str, Any], *,
                    k: int, min_judged: int, n_boot: int, seed: int, level: float,
                    power: float = POWER, alpha: float = ALPHA) -> dict[str, Any]:
    """Pairwise accuracy per candidate and every paired difference vs ``baseline`` with its CI and MDE.

    ``boot`` is :func:`~relsum.evaluation.bootstrap.paired_bootstrap`'s result on the same rows (R@P and
    NDCG differences come from it); the pair-level CIs use its resamples (same seed, same query order).
    Returns ``{"n_comparable_pairs", "n_queries_pairwise", "pairwise_accuracy": {cand: {value, lo, hi}},
    "paired": {cand: {metric: {value, lo, hi, sd_diff, n_queries, mde, detectable}}}}``.
    """
    qids, y = df["query_id"].to_numpy(), df["label"].to_numpy(dtype=np.float64)
    uq, qcode = np.unique(qids, return_inverse=True)
    qcode = qcode.reshape(-1)
    counts = resample_counts(len(uq), n_boot, seed)
    n_per_query = np.bincount(qcode, minlength=len(uq)).astype(np.float64)
    sums, correct, ndcg = {}, {}, {}
    pairs = np.zeros(len(uq))
    for c in candidates:
        s = df[f"score_{c}"].to_numpy(dtype=np.float64)
        sums[c] = np.bincount(qcode, weights=-np.abs(s - y), minlength=len(uq))
        _, correct[c], pairs = per_query_pairwise_accuracy(qcode, y, s)
        _, ndcg[c] = per_query_ndcg_at_k(qcode, y, s, k, min_judged)
    out: dict[str, Any] = {
        "n_comparable_pairs": int(pairs.sum()), "n_queries_pairwise": int((pairs > 0).sum()),
        "pairwise_accuracy": {
            # correct / pairs summed over queries is relsum.metrics.ranking.pairwise_accuracy (tests check)
            c: Interval(float(correct[c].sum() / pairs.sum()) if pairs.sum() else float("nan"),
                        *percentile_interval(ratio_replicates(correct[c], pairs, counts), level)).as_dict()
            for c in candidates},
        "paired": {},
    }
    n_all = len(uq)
    for c in candidates:
        if c == baseline:
            continue
        entry = {}
        for m in boot[c]["diff"]:  # the two ranking metrics, named with their cutoffs
            diff, se = boot[c]["diff"][m], boot[c]["diff_se"][m]
            if names.parse_metric_name(m)[0] == "ndcg":
                d = ndcg[c] - ndcg[baseline]
                sd, n = _ratio_sd(np.nan_to_num(d), (~np.isnan(d)).astype(np.float64))
            else:  # no per-query values: sigma_d from the bootstrap standard error
                sd, n = se * math.sqrt(n_all), n_all
            entry[m] = _entry(diff.value, (diff.lo, diff.hi), sd, n, power, alpha)
        for m, a, w in (("reward", sums[c] - sums[baseline], n_per_query),
                        ("pairwise_accuracy", correct[c] - correct[baseline], pairs)):
            value = float(a.sum() / w.sum()) if w.sum() > 0 else float("nan")
            ci = percentile_interval(ratio_replicates(a, w, counts), level)
            entry[m] = _entry(value, ci, *_ratio_sd(a, w), power, alpha)
        out["paired"][c] = entry
    return out


def _num(x: Any, digits: int = 3, sign: bool = True) -> str:
    if x is None or not math.isfinite(float(x)):
        return "n/a"
    text = f"{abs(float(x)):.{digits}f}"
    return (("−" if float(x) < 0 and text.strip("0.") else "+") if sign else "") + text


def _display(metrics: Mapping[str, Any]) -> dict[str, str]:
    cfg = metrics["config"]
    return {**cfg["metric_names"], **cfg.get("pair_metric_names", names.pair_metric_names())}


def mde_pct(metrics: Mapping[str, Any], subset: str, candidate: str, metric: str) -> float:
    """The MDE of a gain column in % of the baseline's value (nan where the gain is undefined)."""
    sub = metrics["subsets"][subset]
    base = sub["candidates"][metrics["config"]["baseline"]][metric]["value"]
    entry = sub.get("paired", {}).get(candidate, {}).get(metric, {})
    m, base = (float("nan") if x is None else float(x) for x in (entry.get("mde"), base))
    return 100.0 * m / abs(base) if math.isfinite(m) and math.isfinite(base) and base else float("nan")


def gain_findings(metrics: Mapping[str, Any], candidate: str,
                  columns: list[tuple[str, str]]) -> tuple[list[bool | None], str]:
    """Per gain column whether the gain is a finding, and the row's ``detectable`` cell text."""
    names_ = _display(metrics)
    flags, below, above = [], [], []
    for subset, m in columns:
        gain = metrics["subsets"][subset]["candidates"][candidate]["gain_pct"][m]
        pct = mde_pct(metrics, subset, candidate, m)
        vals = [float("nan") if gain.get(key) is None else float(gain[key]) for key in ("value", "lo", "hi")]
        flag = verdict(*vals, pct)
        flags.append(flag)
        if flag is not None:
            mde_text = f"MDE {_num(pct, 1, False)}%" if math.isfinite(pct) else "no MDE"
            (above if flag else below).append(f"{subset} {names_[m]} ({mde_text})")
    return flags, _summary(below, above, "detectable")


def paired_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """One row per (subset, candidate): each measure's paired difference vs the baseline [CI], its MDE
    and query count, † where it is below what the set can detect, and a ``detectable`` summary."""
    cfg, names_ = metrics["config"], _display(metrics)
    records = []
    for subset, sub in metrics["subsets"].items():
        for c, entry in sub.get("paired", {}).items():
            rec, below, above = {"subset": f"Golden-{subset}", "candidate": c}, [], []
            for m in names.paired_metrics(cfg):
                e = entry[m]
                ok = e.get("detectable")
                rec[f"Δ {names_[m]}"] = (f"{_num(e['value'])} [{_num(e['lo'])}, {_num(e['hi'])}]; MDE "
                                         f"{_num(e['mde'], sign=False)} ({e['n_queries']} q)"
                                         + (" †" if ok is False else ""))
                if ok is not None:
                    (above if ok else below).append(names_[m])
            rec["detectable"] = _summary(below, above)
            records.append(rec)
    if not records:
        return pd.DataFrame(columns=["detectable"], index=pd.MultiIndex.from_tuples(
            [], names=["subset", "candidate"]))
    logger.debug("paired table: %d rows vs %s", len(records), cfg["baseline"])
    return pd.DataFrame.from_records(records).set_index(["subset", "candidate"])


def mde_note(metrics: Mapping[str, Any]) -> str:
    """The footnote that says what † and the MDE mean."""
    mc = metrics["config"].get("mde", {"power": POWER, "alpha": ALPHA})
    return (f"† {BELOW}: the difference is smaller than the minimum detectable effect or its CI includes 0, "
            f"so it is not a finding. MDE: the smallest true change a paired t-test over these queries finds "
            f"with {100 * mc['power']:g}% power at alpha {mc['alpha']:g} (two-sided), from the spread of the "
            f"per-query differences (R@P: from the bootstrap standard error). The pair-level measures "
            f"(training reward −|r−l|, pairwise accuracy) weigh every judged pair, not one value per query.")


def mlflow_metrics(metrics: Mapping[str, Any], candidate: str, as_name: str = names.OWN) -> dict[str, float]:
    """Flat MLflow metrics of one candidate's pair-level values, paired differences and MDEs (finite only),
    named by :mod:`relsum.metrics.names` with ``as_name`` as the candidate (``challenger`` = ``eval.*``)."""
    mc = metrics["config"].get("mde", {"power": POWER, "alpha": ALPHA})
    out: dict[str, float] = {}
    for subset in names.SUBSETS:
        sub = metrics["subsets"][subset]
        acc = sub.get("pairwise_accuracy", {}).get(candidate)
        for stat in names.STATS:
            if acc is not None:
                out[names.pair_key(subset, "pairwise_accuracy", stat, as_name)] = acc[stat]
            reward = sub["candidates"].get(candidate, {}).get("reward")
            if reward is not None:
                out[names.pair_key(subset, "reward", stat, as_name)] = reward[stat]
        for m, e in sub.get("paired", {}).get(candidate, {}).items():
            for stat in names.STATS:
                out[names.diff_key(subset, m, stat, as_name)] = e[stat]
            out[names.diff_key(subset, m, "mde", as_name, mc["power"], mc["alpha"])] = e["mde"]
    return {k: float(v) for k, v in out.items() if v is not None and math.isfinite(float(v))}


def headline(metrics: Mapping[str, Any], candidate: str, *, subset: str = "full",
             whole_queries: int | None = None) -> str:
    """One line that answers "does ``candidate`` rank better than the baseline?" with what the set can detect.

    The gain in NDCG@k over the baseline with its CI, the MDE at the evaluation's power, and whether the
    gain is a finding; ``whole_queries`` (the query count of the whole split, where the evaluation ran on a
    subset) adds the MDE the whole split would have at the same spread of per-query differences, so a
    reader sees how far the subset is from an answer and how far the whole split would be.
    """
    cfg = metrics["config"]
    ndcg = names.metrics_of(cfg)[1]
    sub = metrics["subsets"][subset]
    gain = sub["candidates"][candidate]["gain_pct"][ndcg]
    entry = sub.get("paired", {}).get(candidate, {}).get(ndcg, {})
    vals = [float("nan") if gain.get(key) is None else float(gain[key]) for key in ("value", "lo", "hi")]
    pct = mde_pct(metrics, subset, candidate, ndcg)
    n = int(entry.get("n_queries") or 0)
    power = 100 * cfg.get("mde", {"power": POWER})["power"]
    finding = verdict(*vals, pct)
    text = (f"{candidate} vs {cfg['baseline']}, {names.metric_label(ndcg)} on golden-{subset} "
            f"({n} queries count): "
            f"{_num(vals[0], 1)}% [{_num(vals[1], 1)}, {_num(vals[2], 1)}]; this set detects changes of "
            f"{_num(pct, 1, False)}% or more ({power:g}% power): "
            + ("a finding" if finding else BELOW if finding is False else "undefined"))
    base = sub["candidates"][cfg["baseline"]][ndcg]["value"]
    sd = entry.get("sd_diff")
    if whole_queries and n and whole_queries > n and sd is not None and base:
        whole = 100.0 * mde(float(sd), whole_queries) / abs(float(base))
        if math.isfinite(whole):
            text += f"; the whole split ({whole_queries} queries) would detect about {_num(whole, 1, False)}%"
    return text
