"""Model registry: evaluation metrics on runs, the champion/challenger gate and the ``champion`` alias.

Metric naming scheme (MLflow metrics on the training run of a model version, step 0):

* ``eval.<subset>.<metric>``, ``eval.<subset>.<metric>.lo``, ``eval.<subset>.<metric>.hi``: the run's own
  adapter on the golden set, with its 95% bootstrap CI; ``<subset>`` is ``full`` or ``tail``,
  ``<metric>`` names its cutoff: ``ndcg@5`` (NDCG@5) or ``r@90p`` (R@90P), stored in MLflow as
  ``ndcg_at_5`` / ``r_at_90p`` (MLflow refuses ``@``; :func:`relsum.metrics.names.mlflow_key`).
* ``eval.<subset>.<metric>.gain_pct[.lo|.hi]``: % gain over title-only ranking, with CI.
* ``eval.<subset>.n_queries``: queries in the subset.
* ``baseline.<candidate>.<subset>.<metric>[.lo|.hi]``: the other candidates scored in the same evaluation
  (``none`` title only, ``sum_ref`` the reference policy, ``champion`` the champion of that moment). The
  champion's version is in the run tag ``relsum.eval.champion_version``.

Gate: a challenger becomes champion when its NDCG@5 beats the champion's by more than ``min_ndcg_gain``
on BOTH full and tail, and its R@90P is at most ``r_at_p_tolerance`` (absolute) below the champion's
on both, at the cutoffs both were evaluated at (runs evaluated at different cutoffs are an
:class:`~relsum.core.errors.InputError`, never a comparison). The champion figures are the paired ones
measured in the challenger's own evaluation when that evaluation ran against the current champion (same
scorer, same golden set), else the champion run's own ``eval.*`` metrics. With no champion yet, the
first version becomes champion. The decision is stored as version tags (``relsum.gate``,
``relsum.gate.reason``), so a re-run returns the same decision.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from relsum.lifecycle.config import PromotionGateConfig, TrackingConfig
from relsum.lifecycle.tracking import client
from relsum.metrics import names

logger = logging.getLogger(__name__)

SUBSETS = names.SUBSETS
TAG_INTERVAL, TAG_FINGERPRINT, TAG_GATE = "relsum.interval", "relsum.fingerprint", "relsum.gate"
TAG_CHAMPION_EVAL = "relsum.eval.champion_version"


def champion_version(tracking: TrackingConfig, alias: str = "champion"):
    """The ModelVersion behind ``alias``, or ``None`` when no version holds it (or no model exists)."""
    from mlflow.exceptions import MlflowException

    try:
        return client(tracking).get_model_version_by_alias(tracking.registered_model, alias)
    except MlflowException:
        return None


def find_version(tracking: TrackingConfig, tags: dict[str, str]):
    """The newest version of the registered model carrying all ``tags`` (interval, fingerprint), or
    ``None``."""
    found = [v for v in client(tracking).search_model_versions(f"name='{tracking.registered_model}'")
             if all(v.tags.get(k) == val for k, val in tags.items())]
    return max(found, key=lambda v: int(v.version)) if found else None


def local_path(uri: str) -> Path | None:
    """The local folder of a ``file:`` URI or plain path, ``None`` for a remote store."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(url2pathname(parsed.path)) if parsed.scheme else Path(uri)
    return None


def resolve(tracking: TrackingConfig, version, download_root: Path) -> dict[str, str]:
    """Version -> adapter folder (downloaded once when the store is remote) + policy dir from its tags."""
    path = local_path(version.source)
    if path is None or not path.exists():
        import mlflow

        path = download_root / f"v{version.version}" / "adapter"
        if not path.exists():
            tmp = path.with_name("adapter.partial")
            tmp.mkdir(parents=True, exist_ok=True)
            got = Path(mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=str(tmp),
                                                           tracking_uri=tracking.resolved_uri()))
            got.rename(path)
    policy = version.tags.get("policy_dir", "")
    if not policy:
        raise ValueError(f"{tracking.registered_model} v{version.version} has no policy_dir tag")
    return {"version": str(version.version), "adapter_dir": str(path), "policy_dir": policy,
            "run_id": version.run_id or ""}


def eval_metric_dict(metrics: dict[str, Any], candidate: str) -> dict[str, float]:
    """Flat MLflow metrics for one candidate of an evaluate ``metrics.json`` (names:
    :mod:`relsum.metrics.names`)."""
    out: dict[str, float] = {}
    own = candidate == names.OWN
    for subset in SUBSETS:
        sub = metrics["subsets"][subset]
        block = sub["candidates"][candidate]
        ranking = [m for m in block if names.is_ranking_metric(m)]  # ndcg@5, r@90p: named with their cutoffs
        if not ranking:
            from relsum.core.errors import InputError

            raise InputError(f"the evaluation's {subset} block of {candidate!r} has no metric named with its "
                             "cutoff (ndcg@<k>, r@<percent>p): it predates them; run the evaluation again")
        for metric in ranking:
            for stat in names.STATS:
                out[names.eval_key(subset, metric, stat, candidate)] = block[metric][stat]
                if own:
                    out[names.eval_key(subset, metric, stat, candidate,
                                       gain=True)] = block["gain_pct"][metric][stat]
        if own:
            out[names.n_queries_key(subset)] = sub["n_queries"]
    from relsum.evaluation.power import mlflow_metrics  # pair-level values, paired differences, MDEs

    out.update(mlflow_metrics(metrics, candidate, candidate))
    return {k: float(v) for k, v in out.items() if v is not None and math.isfinite(float(v))}


def log_evaluation(tracking: TrackingConfig, run_id: str, metrics: dict[str, Any],
                   champion: str | None, artifacts: list[str]) -> dict[str, float]:
    """Attach the evaluation to the run: metrics not yet logged with the same value, tag, artifacts."""
    c = client(tracking, write=True)
    flat = eval_metric_dict(metrics, "challenger")
    for name in metrics["config"]["candidates"]:
        if name != "challenger":
            flat.update(eval_metric_dict(metrics, name))
    existing = c.get_run(run_id).data.metrics
    todo = {k: v for k, v in flat.items() if existing.get(names.mlflow_key(k)) != v}
    if todo:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)  # a real timestamp, so these become the latest values of the keys
        c.log_batch(run_id, metrics=[Metric(names.mlflow_key(k), v, now, 0) for k, v in sorted(todo.items())])
    c.set_tag(run_id, TAG_CHAMPION_EVAL, champion or "")
    for path in artifacts:
        c.log_artifact(run_id, path, "evaluation")
    logger.info("run %s: %d evaluation metrics (%d new)", run_id, len(flat), len(todo))
    return flat


def read_eval(tracking: TrackingConfig, run_id: str,
              candidate: str = names.OWN) -> dict[str, dict[str, float]]:
    """``{subset: {metric: value}}`` of a run's own (or a baseline ``candidate``'s) ranking metrics, named
    with their cutoffs as the run carries them (``ndcg@5``; missing in a subset = nan)."""
    metrics = client(tracking).get_run(run_id).data.metrics
    found = names.eval_metric_names(metrics, candidate)
    return {s: {m: float(metrics.get(names.mlflow_key(names.eval_key(s, m, candidate=candidate)), math.nan))
                for m in found} for s in SUBSETS}


def decide(challenger: dict[str, dict[str, float]], champion: dict[str, dict[str, float]] | None,
           gate: PromotionGateConfig) -> tuple[bool, list[str]]:
    """(promote, reasons): pure gate logic; undefined metrics never pass.

    The metrics are compared at the challenger's cutoffs (``ndcg@5``, ``r@90p``); a champion that carries
    the same measure at other cutoffs only (``ndcg@10``) is an :class:`~relsum.core.errors.InputError`."""
    if champion is None:
        return True, ["no champion yet: the first version becomes champion"]
    names.check_same_cutoffs({"challenger": [m for s in SUBSETS for m in challenger[s]],
                              "champion": [m for s in SUBSETS for m in champion[s]]},
                             "gate the challenger against the champion")
    ok, reasons = True, []
    for subset in SUBSETS:
        found = {*champion[subset], *challenger[subset]}
        for measure in ("ndcg", "r"):
            metrics = sorted(m for m in found if names.parse_metric_name(m)[0] == measure)
            if not metrics:
                ok = False
                reasons.append(f"{subset} {measure}: not evaluated on either run")
            for metric in metrics:
                new, old = challenger[subset].get(metric, math.nan), champion[subset].get(metric, math.nan)
                both = math.isfinite(new) and math.isfinite(old)
                label = names.metric_label(metric)
                if measure == "ndcg":
                    passed = both and new - old > gate.min_ndcg_gain
                    verdict = "better" if passed else "not better"
                    reasons.append(f"{subset} {label} {new:.4f} vs {old:.4f}: {verdict}")
                else:
                    passed = both and new >= old - gate.r_at_p_tolerance
                    verdict = "ok" if passed else "loses too much"
                    reasons.append(f"{subset} {label} {new:.4f} vs {old:.4f} "
                                   f"(tolerance {gate.r_at_p_tolerance}): {verdict}")
                ok &= passed
    return ok, reasons


def apply_gate(tracking: TrackingConfig, version: str, gate: PromotionGateConfig) -> dict[str, Any]:
    """Gate ``version`` against the current champion and move the alias if it wins (idempotent)."""
    c = client(tracking, write=True)
    name = tracking.registered_model
    mv = c.get_model_version(name, version)
    current = champion_version(tracking, gate.alias)
    if mv.tags.get(TAG_GATE):
        decision = {"version": version, "promoted": mv.tags[TAG_GATE] == "promoted",
                    "reasons": mv.tags.get(f"{TAG_GATE}.reason", "").split("; ")}
        return decision | {"champion": str(current.version) if current else None}
    if current is not None and str(current.version) == str(version):
        promote, reasons = True, ["already champion"]
    else:
        challenger = read_eval(tracking, mv.run_id)
        champion = None
        if current is not None:
            run = c.get_run(mv.run_id)
            paired = run.data.tags.get(TAG_CHAMPION_EVAL) == str(current.version)
            champion = read_eval(tracking, mv.run_id, "champion") if paired else read_eval(
                tracking, current.run_id)
        promote, reasons = decide(challenger, champion, gate)
    if promote:
        c.set_registered_model_alias(name, gate.alias, str(version))
    c.set_model_version_tag(name, str(version), f"{TAG_GATE}.reason", "; ".join(reasons)[:5000])
    c.set_model_version_tag(name, str(version), TAG_GATE, "promoted" if promote else "rejected")
    logger.info("gate %s v%s: %s (%s)", name, version, "promoted" if promote else "rejected",
                "; ".join(reasons))
    now = champion_version(tracking, gate.alias)
    return {"version": str(version), "promoted": promote, "reasons": reasons,
            "champion": str(now.version) if now else None}
