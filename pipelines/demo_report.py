"""The demo's reporting: the seeded golden subset, the held-out comparison as report lines, and the
evaluation logged to the training run in MLflow (in :mod:`relsum.metrics.names`' scheme).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from relsum.metrics.names import groundedness_key, heldout_key, mlflow_key

if TYPE_CHECKING:
    from relsum.pipelines.evaluate import EvaluationResult

logger = logging.getLogger(__name__)


def seed_runs(algo: str, seed: int, seeds: list[int]) -> list[tuple[str, int]]:
    """(candidate name, training seed) per adapter: ``[(algo, seed)]``, or ``<algo>_s<seed>`` per listed
    seed."""
    return [(f"{algo}_s{s}", s) for s in seeds] if seeds else [(algo, seed)]


def heldout_lines(heldout: dict, algo: str) -> list[str]:
    """The held-out reward comparison as report lines: sampled (expected reward), greedy (deployed), per
    label."""
    nan = float("nan")
    lines = [f"Held-out reward -|r(q,[t;s]) - l| on {heldout.get('heldout_pairs', 0)} pairs / "
             f"{heldout.get('heldout_products', 0)} unseen products (95% CI: paired "
             f"bootstrap over products):"]
    rows = [("greedy summary (deployed)", False)]
    if "sampled_k" in heldout:
        rows.insert(0, (f"expected, {heldout['sampled_k']} samples", True))
    for label, sampled in rows:
        lo, hi = heldout.get(heldout_key("reward_diff", sampled, ci=True), [nan, nan])
        lines.append(f"  {label:<26} "
                     f"reference {heldout.get(heldout_key('reward_reference', sampled), nan):.4f}   "
                     f"{algo} {heldout.get(heldout_key('reward_trained', sampled), nan):.4f}   "
                     f"difference {heldout.get(heldout_key('reward_diff', sampled), nan):+.4f} "
                     f"[{lo:+.4f}, {hi:+.4f}]")
    for label, sampled in rows:
        shifts = heldout.get(heldout_key("label_shifts", sampled)) or []
        if shifts:
            lines.append(f"  score shift r(q,[t;s]) by label, {label.split(',')[0].split(' (')[0]}: "
                         "(a healthy policy raises label-1 and lowers label-0 scores)")
        for s in shifts:
            lines.append(f"    label {s['label']:<4g} {s['pairs']:>4} pairs "
                         f"({100 * s['share']:.0f}%)   reference "
                         f"{s['score_reference']:.4f}   {algo} {s['score_trained']:.4f}   "
                         f"shift {s['shift']:+.4f} "
                         f"[{s['shift_ci95'][0]:+.4f}, {s['shift_ci95'][1]:+.4f}]")
    if "groundedness_diff" in heldout:
        lo, hi = heldout["groundedness_diff_ci95"]
        lines.append(f"  groundedness of greedy summaries (share of content tokens in the product text): "
                     f"reference {heldout['groundedness_reference']:.3f}   {algo} "
                     f"{heldout['groundedness_trained']:.3f}   "
                     f"difference {heldout['groundedness_diff']:+.3f} [{lo:+.3f}, {hi:+.3f}]")
    return lines


def pooled_seed_lines(heldouts: dict[str, dict]) -> list[str]:
    """Across training seeds: the mean of the per-seed held-out reward differences with a 95% CI.

    Each seed has its own held-out products and its own paired-bootstrap CI; the seeds are independent, so
    the mean's standard error is sqrt(sum se_i^2) / n with se_i = (hi_i - lo_i) / (2 * 1.96) (a normal
    approximation of each seed's bootstrap interval). This is the figure that does not hang on one seed's
    numerics; the per-seed lines above show how much the seeds disagree. Empty for fewer than two seeds.
    """
    if len(heldouts) < 2:
        return []
    lines = [f"Pooled over {len(heldouts)} seeds (mean of per-seed differences; 95% CI from the per-seed "
             "CIs, normal approximation):"]
    for label, sampled in (("expected reward (sampled)", True), ("greedy summary (deployed)", False)):
        diffs, ses = [], []
        for h in heldouts.values():
            ci = h.get(heldout_key("reward_diff", sampled, ci=True))
            if ci is None:
                break
            diffs.append(h[heldout_key("reward_diff", sampled)])
            ses.append((ci[1] - ci[0]) / (2 * 1.96))
        else:
            mean = sum(diffs) / len(diffs)
            se = sum(x * x for x in ses) ** 0.5 / len(ses)
            positive = sum(d > 0 for d in diffs)
            lo, hi = mean - 1.96 * se, mean + 1.96 * se
            lines.append(f"  {label:<26} difference {mean:+.4f} [{lo:+.4f}, {hi:+.4f}]"
                         f"   ({positive} of {len(diffs)} seeds above zero)")
    return lines


def defect_lines(defects: dict[str, dict[str, dict[str, int]]]) -> list[str]:
    """Per summaries candidate, :func:`relsum.policy.served.summary_defects` counts of what the policy
    wrote (raw) and what is served: tokens the ranker would spend on nothing; served counts must be 0."""
    if not defects:
        return []
    lines = ["Summary defects (raw model output -> served; labels, numbering, restated titles ...):"]
    for name, counts in defects.items():
        raw, served = counts.get("raw") or {}, counts["served"]
        kinds = [k for k in served if k != "n"]
        lines.append(f"  {name:<8} " + "   ".join(
            f"{k.replace('_', ' ')} {raw.get(k, '?')} -> {served[k]}" for k in kinds)
            + f"   (of {served['n']})")
    return lines


def golden_subset(golden: str, max_products: int, seed: int, out: Path) -> tuple[str, str]:
    """(golden folder, one-line note): the folder itself, or a copy cut to whole queries covering at most
    ``max_products`` judged products (seeded; tail and head queries alternate).

    Whole queries, not single products, so every kept query keeps its full candidate list and R@90P /
    NDCG@5 mean what they mean on the full set.
    """
    from relsum.data.golden import CONFIG_FILE, find_catalog, load_golden
    from relsum.data.io import atomic_path, read_table, write_csv_atomic, write_text_atomic
    from relsum.evaluation.examples import pick_queries

    full = load_golden(golden)
    judged = full.judgments[full.judgments["product_id"].isin(full.catalog["product_id"])]
    n_products, n_queries = judged["product_id"].nunique(), judged["query_id"].nunique()
    if not max_products or n_products <= max_products:
        return golden, f"golden set: all {n_queries} judged queries, {n_products} products"
    keep, products = [], set()
    for qid in pick_queries(full.queries, set(judged["query_id"]), n_queries, seed):
        mine = set(judged.loc[judged["query_id"] == qid, "product_id"])
        if len(products | mine) <= max_products:
            keep.append(qid)
            products |= mine
    if not keep:
        raise ValueError(f"golden_products={max_products} is smaller than every golden "
                         f"query's candidate list")
    src = Path(golden)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("queries.csv", "judgments.csv"):
        frame = pd.read_csv(src / name, dtype=str, keep_default_na=False)
        write_csv_atomic(frame[frame["query_id"].isin(keep)], out / name)
    for folder in (src, src.parent):
        if (folder / CONFIG_FILE).is_file():
            write_text_atomic((folder / CONFIG_FILE).read_text(), out / CONFIG_FILE)
            break
    catalog = read_table(str(find_catalog(src)))
    catalog = catalog[catalog["product_id"].astype(str).isin(products)]
    with atomic_path(out / "products.jsonl") as tmp:
        catalog.to_json(tmp, orient="records", lines=True, force_ascii=False)
    note = (f"golden set: seeded subset (seed {seed}, demo.golden_products={max_products}) of {len(keep)} of "
            f"{n_queries} judged queries, {len(products)} of {n_products} products; "
            f"golden_products=0 runs all")
    logger.info(note)
    return str(out), note


def _finite(values: dict) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}


def log_demo_evaluation(tracking, run_id: str, evaluation: EvaluationResult, algo: str,
                        grounded: dict) -> None:
    """Log the evaluation on the training run, in :mod:`relsum.lifecycle.registry`'s scheme, so
    ``relsum compare``
    reads it.

    The trained candidate (``algo``) is the run's own adapter, so it gets the ``eval.*`` names; the others
    (none, desc, sum_ref) become ``baseline.<name>.*``. Groundedness goes in as
    ``groundedness.<name>[.lo|.hi]``
    and ``groundedness.<name>.numbers``, the report files as artifacts under ``evaluation/``. The pair-level
    measures, paired differences and their minimum detectable effects go in under
    :func:`relsum.metrics.names.pair_key` / :func:`~relsum.metrics.names.diff_key` names
    (:func:`relsum.evaluation.power.mlflow_metrics`). The held-out comparison is already on the run (the
    train stage logs it).
    """
    import copy

    from relsum.evaluation.power import mlflow_metrics
    from relsum.lifecycle import registry
    from relsum.lifecycle.registry import client

    metrics = copy.deepcopy(evaluation.metrics)
    for sub in metrics["subsets"].values():
        sub["candidates"]["challenger"] = sub["candidates"].pop(algo)
    metrics["config"]["candidates"] = ["challenger" if c == algo else c
                                       for c in metrics["config"]["candidates"]]
    files = evaluation.paths
    artifacts = [p for p in (files.metrics, files.md, files.html) if Path(p).is_file()]
    registry.log_evaluation(tracking, run_id, metrics, None, artifacts)
    flat = {}
    for name, g in grounded.items():
        flat.update({groundedness_key(name): g["groundedness"], groundedness_key(name, "lo"): g["ci_low"],
                     groundedness_key(name, "hi"): g["ci_high"],
                     groundedness_key(name, "numbers"): g["numbers_grounded"]})
    for name in evaluation.metrics["config"]["candidates"]:
        flat.update(mlflow_metrics(evaluation.metrics, name, "challenger" if name == algo else name))
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(mlflow_key(key), value, now, 0) for key, value in sorted(_finite(flat).items())]
    for start in range(0, len(batch), 1000):  # one request per 1000 metrics (MLflow's batch limit)
        client(tracking).log_batch(run_id, metrics=batch[start:start + 1000])


def policy_runs_fp32(policy: Any) -> bool:
    """Whether a :class:`relsum.policy.config.PolicyConfig` computes in fp32 on the CPU: a real model
    (not the tiny build) with ``dtype: fp32``, or ``dtype: auto`` on a CPU without native bf16."""
    from relsum.policy.tiny import MARKER_FILE

    if not policy.model_dir or policy.bf16 or (Path(policy.model_dir) / MARKER_FILE).exists():
        return False
    if policy.dtype != "auto":
        return policy.dtype == "fp32"
    from relsum.core.machine import native_bf16

    return not native_bf16()


def apply_demo_size(config: Any, fp32_policy: bool) -> str:
    """Cut a :class:`relsum.pipelines.configs.DemoConfig` to its ``fp32_size`` in place where ``size``
    asks for it (never raising a configured size); returns the line the demo prints about its size."""
    if config.size == "configured" or (config.size == "auto" and not fp32_policy):
        return ""
    tc, small = config.train.trainer, config.fp32_size
    stage = getattr(tc, tc.algo)  # the algorithm's own section (grpo, dpo or rft: max_steps per round)

    def smaller(configured: int, cap: int, unlimited: int) -> int:
        return cap if configured == unlimited or configured <= 0 else min(configured, cap)

    before = (stage.max_steps, config.train.max_heldout_products, config.golden_products)
    stage.max_steps = smaller(stage.max_steps, small.max_steps, -1)
    config.train.max_heldout_products = smaller(config.train.max_heldout_products,
                                                small.max_heldout_products, 0)
    config.golden_products = smaller(config.golden_products, small.golden_products, 0)
    why = "the policy runs in fp32 (CPU without native bf16)" if config.size == "auto" else "size=fp32"
    return (f"sized down because {why}: {stage.max_steps} {tc.algo.upper()} updates (configured "
            f"{before[0]}), {config.train.max_heldout_products} held-out products ({before[1]}), "
            f"{config.golden_products} golden products ({before[2]}); size=configured runs the configured "
            f"sizes")
