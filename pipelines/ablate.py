"""Stage: ablation of the GRPO options (paper alone, each option alone, all combined), same seeds and budget.

Every variant trains from the same policy on the same train split for the same ``max_steps``, then
writes greedy summaries of the golden products and of the held-out products (product split as in
``train``). Reported per variant: R@90P and NDCG@5 [95% CI] on golden full and tail (one
``evaluate`` call, so all candidates share the bootstrap draws), mean held-out reward and its paired
difference to the paper variant [95% CI over products], summary length, groundedness, and the
deployment gate's coverage; the gated summaries are evaluated too (``<variant>_gated``).

The gate uses the search-log pairs of each golden product (train queries, never golden ones; no
labels are read) as its queries; a golden product without any falls back to ``gate.keep_unjudged``.
Output: ``<out_dir>/ablation.md`` + ``ablation.json``, the evaluation report under
``<out_dir>/evaluation``, and one MLflow parent run with a nested child run per variant.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from relsum.core.config import flat_params
from relsum.core.paths import home
from relsum.metrics.names import ablation_key, metrics_of
from relsum.pipelines.configs import AblateConfig, EvaluateConfig, TrainStageConfig
from relsum.scoring.protocol import RelevanceScorer
from relsum.training.config import OptionsConfig

logger = logging.getLogger(__name__)

def variant_options(name: str, on: OptionsConfig) -> OptionsConfig:
    """The options of one variant: the paper (all off), one option from ``on``, or all of ``on``."""
    off = OptionsConfig()
    if name == "paper":
        return off
    if name == "all":
        return copy.deepcopy(on)
    fields = {"product_reward": ["product_reward", "product_max_queries"],
              "group_filter": ["group_filter", "group_min_std"],
              "entropy": ["top_entropy_quantile"], "variance_credit": ["variance_credit"],
              "grounding": ["grounding_weight"]}[name]
    return dataclasses.replace(off, **{f: getattr(on, f) for f in fields})


def _cell(iv: dict) -> str:
    if iv.get("value") is None:
        return "n/a"
    return (f"{iv['value']:.3f} [{iv['lo']:.3f}, {iv['hi']:.3f}]" if iv.get("lo") is not None
            else f"{iv['value']:.3f}")


def _markdown(rows: list[dict], metrics: dict, config: AblateConfig) -> str:
    names, ranking = metrics["config"]["metric_names"], metrics_of(metrics["config"])
    head = ["variant", *(f"{s} {names[m]}" for s in ("full", "tail") for m in ranking),
            "held-out reward", "vs paper [95% CI]", "length", "groundedness", "gate coverage"]
    lines = [f"# GRPO options ablation ({config.max_steps} steps per variant, seed {config.train.seed})", "",
             "Metrics [95% paired bootstrap CI over queries]; held-out reward -|r(q,[t;s]) - l| on unseen "
             "products, difference to `paper` with a 95% CI over products. `_gated` rows: "
             "the deployment gate applied (title only where the summary does not help).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        for cand in (row["variant"], f"{row['variant']}_gated"):
            if cand not in metrics["subsets"]["full"]["candidates"]:
                continue
            cells = [cand] + [_cell(metrics["subsets"][s]["candidates"][cand][m]) for s in ("full", "tail")
                              for m in ranking]
            gated = cand.endswith("_gated")
            diff = row.get("reward_vs_paper")
            cells += ["" if gated else f"{row['heldout_reward']:.4f}",
                      "" if gated or diff is None else f"{diff[0]:+.4f} [{diff[1]:+.4f}, {diff[2]:+.4f}]",
                      "" if gated else f"{row['summary_words']:.1f}",
                      "" if gated else f"{row['groundedness']:.3f}",
                      f"{100 * row['gate_coverage']:.1f}%" if gated else ""]
            lines.append("| " + " | ".join(cells) + " |")
    for base in ("none", "desc", "lead", "sum_ref"):
        if base not in metrics["subsets"]["full"]["candidates"]:
            continue
        cells = [base] + [_cell(metrics["subsets"][s]["candidates"][base][m]) for s in ("full", "tail")
                          for m in ranking] + [""] * 5
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run(config: AblateConfig, scorer: RelevanceScorer | None = None) -> dict:
    import mlflow

    from relsum.data.golden import load_golden
    from relsum.data.io import atomic_path, read_table, write_json_atomic
    from relsum.evaluation.offline import to_jsonable
    from relsum.lifecycle import tracking
    from relsum.lifecycle.gate import gate_section, gate_summaries
    from relsum.pipelines import build_pairs, evaluate
    from relsum.pipelines.reward_model import ensure_reward_model
    from relsum.pipelines.train import ensure_policy, split_by_product
    from relsum.policy.load import load_policy
    from relsum.scoring.factory import make_scorer
    from relsum.training.grounding import groundedness_section, groundedness_stats
    from relsum.training.grpo import train_grpo
    from relsum.training.policy_eval import pair_rewards, paired_product_bootstrap, summarize_products

    out = Path(config.out_dir) if config.out_dir else home() / "ablate"
    out.mkdir(parents=True, exist_ok=True)
    reward_model = ensure_reward_model(config.reward_model)
    scorer = scorer or make_scorer(reward_model, config.scorer)
    base = copy.deepcopy(config.train)
    base.policy.model_dir = ensure_policy(TrainStageConfig(trainer=base, tiny_policy_dir=config.policy_dir))
    build = dataclasses.replace(config.build, reward_model=reward_model, out_dir=str(out / "pairs"))
    pairs_path = config.pairs or build_pairs.run(build, scorer=scorer).paths.pairs
    pairs = read_table(pairs_path)
    train_df, heldout = split_by_product(pairs, config.holdout_fraction, base.seed)
    golden = load_golden(config.golden)
    products = evaluate.golden_products(golden)
    if config.max_eval_products and len(products) > config.max_eval_products:
        products = products.sample(n=config.max_eval_products, random_state=base.seed)
    held_products = heldout.drop_duplicates("product_id")[["product_id", "title", "text"]]
    if config.max_heldout_products and len(held_products) > config.max_heldout_products:
        held_products = held_products.sample(n=config.max_heldout_products, random_state=base.seed)
        heldout = heldout[heldout["product_id"].isin(held_products["product_id"])].reset_index(drop=True)
    gate_pairs = pairs[pairs["product_id"].isin(products["product_id"])][["query", "product_id", "title"]]

    def summarize(name: str, loaded: tuple) -> tuple[pd.Series, pd.Series]:
        """Golden summaries (written to ``summaries/<name>.parquet``) and held-out ones of one policy."""
        summary_files[name] = str(out / "summaries" / f"{name}.parquet")
        return (evaluate.summarize_golden(products, base.policy, summary_files[name], loaded=loaded),
                summarize_products(*loaded, held_products, base.policy) if len(held_products)
                else pd.Series(dtype=str))

    summary_files: dict[str, str] = {}
    # fp32 like the variants, which are summarized by the in-memory training model
    ref_golden, _ = summarize("sum_ref", load_policy(base.policy.model_dir))
    rows, gates, golden_summaries, held_rewards = [], {}, {"sum_ref": ref_golden}, {}
    stamp = f"{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}"
    with tracking.tracked_run(config.tracking, f"ablate-{stamp}", tags={"relsum.stage": "ablate"}) as parent:
        for name in config.variants:
            tc = copy.deepcopy(base)
            tc.options = variant_options(name, config.options)
            tc.out_dir, tc.max_train_rows, tc.grpo.max_steps = (str(out / name), config.max_train_rows,
                                                                 config.max_steps)
            tc.report_to = "none"  # per-step metrics are logged into the child run below
            start = time.perf_counter()
            result = train_grpo(tc, train_df, scorer)
            seconds = time.perf_counter() - start
            gold, held = summarize(name, (result["model"], result["tokenizer"]))
            gated = gate_summaries(gate_pairs, gold, scorer, config.gate)
            gates[name], golden_summaries[name] = gated, gold
            summary_files[f"{name}_gated"] = evaluate.write_summaries(
                gated.summaries, out / "summaries" / f"{name}_gated.parquet")
            held_rewards[name] = pair_rewards(heldout, held, scorer) if len(heldout) else np.array([])
            ground = groundedness_stats(gold, products, n_boot=config.n_boot, seed=base.seed)
            words = gold.str.split().str.len()
            trl_means = pd.DataFrame([r for r in result["log_history"]
                                      if "loss" in r]).mean(numeric_only=True)
            rows.append({"variant": name, "options": dataclasses.asdict(tc.options), "train_seconds": seconds,
                         "steps": result["steps"], "heldout_reward": float(np.mean(held_rewards[name]))
                         if len(heldout) else float("nan"),
                         "summary_words": float(words.mean()), "empty_summaries": int((words == 0).sum()),
                         "groundedness": ground["groundedness"],
                         "groundedness_ci": [ground["ci_low"], ground["ci_high"]],
                         "gate_coverage": gated.coverage, "gate": gated.stats,
                         "trl": {k: float(v) for k, v in trl_means.items()}})
            if parent is not None:
                with mlflow.start_run(run_name=name, nested=True, tags={"relsum.variant": name}):
                    tracking.log_params(flat_params(tc.options, "options."))
                    for step, rec in enumerate(r for r in result["log_history"] if "loss" in r):
                        tracking.log_metrics({k.replace("/", "_"): v for k, v in rec.items()}, step=step)
                    tracking.log_metrics({k: rows[-1][k]
                                          for k in ("heldout_reward", "summary_words", "groundedness",
                                                    "gate_coverage", "train_seconds")})
            del result
        for row in rows:
            if "paper" in held_rewards and len(heldout) and row["variant"] != "paper":
                row["reward_vs_paper"] = list(paired_product_bootstrap(
                    heldout["product_id"].to_numpy(), held_rewards[row["variant"]] - held_rewards["paper"],
                    n_boot=config.n_boot, seed=base.seed))
        sections = {"Groundedness": groundedness_section(golden_summaries, products, n_boot=config.n_boot,
                                                         seed=base.seed),
                    "Deployment gate": gate_section(gates)}
        evaluation = evaluate.run(EvaluateConfig(
            golden=config.golden, reward_model=reward_model, summaries=summary_files,
            out_dir=str(out / "evaluation"),
            n_boot=config.n_boot, seed=base.seed,
            min_summary_coverage=0.0 if config.max_eval_products else 0.95),  # a sample on purpose
            scorer=scorer, extra_sections=sections)
        metrics = evaluation.metrics
        markdown = _markdown(rows, metrics, config) + "\n## Groundedness\n\n" + sections["Groundedness"] + \
            "\n\n## Deployment gate\n\n" + sections["Deployment gate"] + "\n"
        with atomic_path(out / "ablation.md") as tmp:
            tmp.write_text(markdown, encoding="utf-8")
        summary = to_jsonable({"variants": rows, "evaluation": {k: metrics[k] for k in ("config", "subsets")},
                               "paths": {"markdown": str(out / "ablation.md"), **evaluation.paths.to_dict()}})
        write_json_atomic(summary, out / "ablation.json")
        if parent is not None:
            for cand, vals in metrics["subsets"]["full"]["candidates"].items():
                tracking.log_metrics({ablation_key(cand, m): vals[m]["value"]
                                      for m in metrics_of(metrics["config"])})
            mlflow.log_text(markdown, "ablation.md")
            tracking.log_json(summary, "ablation.json")
            summary["mlflow_run_id"] = parent.info.run_id
    summary["markdown"] = markdown
    return summary
