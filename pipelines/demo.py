"""Stage: the README's main job, end to end on the bundled sample on a CPU.

validate -> bootstrap the reward model (if none is given) -> build and filter pairs -> train GRPO on the
policy (SmolLM2-135M-Instruct by default) -> summarize the golden products with the reference policy and
the trained adapter -> evaluate none / desc / sum_ref / grpo. One scorer instance serves every stage, so
its cache is shared and "good" means one thing throughout.

The printed report holds the Table-3-style table, the held-out reward comparison (greedy and expected,
with per-label score shifts), the groundedness figures and the stage timings; ``demo_result.json`` holds
the policy, adapter and summaries paths, so ``relsum summarize`` / ``relsum evaluate`` can reuse them.
The evaluation is logged to the training run in MLflow (``relsum compare`` reads it).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path

from relsum.pipelines.configs import DemoConfig, EvaluateConfig, RewardModelCheckConfig, ValidateConfig
from relsum.pipelines.demo_report import (
    apply_demo_size,
    defect_lines,
    golden_subset,
    heldout_lines,
    log_demo_evaluation,
    policy_runs_fp32,
    pooled_seed_lines,
    seed_runs,
)

logger = logging.getLogger(__name__)

__all__ = ["heldout_lines", "run"]


def _policy_name(model_dir: str) -> str:
    from relsum.policy.tiny import MARKER_FILE

    if model_dir == "smollm2" or "smollm2" in Path(model_dir).name.lower():
        return "SmolLM2-135M-Instruct"
    return "tiny policy" if (Path(model_dir) / MARKER_FILE).exists() else Path(model_dir).name


def run(config: DemoConfig) -> dict:
    from relsum.core.memory import PeakRss, release_memory
    from relsum.data.golden import load_golden
    from relsum.evaluation.examples import examples_section
    from relsum.evaluation.offline import ndcg_query_count
    from relsum.evaluation.power import headline
    from relsum.pipelines import build_pairs, evaluate, reward_model_check, train, validate
    from relsum.pipelines.reward_model import ensure_reward_model
    from relsum.policy.load import resolve_model_dir
    from relsum.policy.served import defect_counts, raw_log
    from relsum.scoring.factory import make_scorer
    from relsum.training.grounding import groundedness_section, groundedness_stats

    config = copy.deepcopy(config)
    size_note = apply_demo_size(config, policy_runs_fp32(config.train.trainer.policy))
    if size_note:
        logger.warning("demo: %s", size_note)
    out = config.resolved_out()
    timings: dict[str, float] = {}
    peak_rss: dict[str, float] = {}  # MB, per stage: what decides whether the demo fits a laptop
    rss = PeakRss().start()
    t0 = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t0
        timings[name] = round(time.perf_counter() - t0, 1)
        release_memory()  # what the stage freed goes back to the OS, not under the next stage's peak
        peak_rss[name] = rss.lap()
        logger.info("demo: %s done in %.1f s, peak RSS %.0f MB", name, timings[name], peak_rss[name])
        t0 = time.perf_counter()

    validation = validate.run(ValidateConfig(
        catalog=config.pairs.catalog, search_log=config.pairs.search_log,
        queries=str(Path(config.golden) / "queries.csv"),
        judgments=str(Path(config.golden) / "judgments.csv"),
        out_dir=str(out / "validate")))
    lap("validate")
    reward_model = ensure_reward_model(config.reward_model)
    scorer = make_scorer(reward_model, config.scorer)
    lap("reward_model")
    check = reward_model_check.run(RewardModelCheckConfig(
        reward_model=reward_model, golden=config.golden, out_dir=str(out / "reward_model_check"),
        n_boot=config.n_boot, seed=config.seed), scorer=scorer)  # does the judge read text? before any RL
    if not check.reads_text:
        logger.warning("demo: the reward model does not read text (%s); training goes on, but a summary "
                       "cannot earn much from it", check.verdict)
    lap("reward_model_check")
    config.pairs.out_dir = str(out / "pairs")
    pairs = build_pairs.run(config.pairs, scorer=scorer)
    lap("pairs")
    tc = config.train.trainer
    runs: dict[str, train.TrainResult] = {}
    for name, seed in seed_runs(tc.algo, tc.seed, config.train_seeds):
        stage = copy.deepcopy(config.train)
        stage.trainer.seed = seed
        stage.trainer.train_data, stage.trainer.scorer_model_dir = pairs.paths.pairs, reward_model
        stage.trainer.out_dir = str(out / "train" / (name if config.train_seeds else ""))
        logger.info("demo: training %s (seed %d)", name, seed)
        runs[name] = train.run(stage, scorer=scorer)
        tc.policy.model_dir, tc.policy.max_prompt_tokens = (stage.trainer.policy.model_dir,
                                                            stage.trainer.policy.max_prompt_tokens)
    trained = runs[next(iter(runs))]
    policy_dir = str(resolve_model_dir(tc.policy.model_dir))
    lap("train")
    golden_dir, subset_note = golden_subset(config.golden, config.golden_products, config.seed,
                                            out / "golden_subset")
    golden = load_golden(golden_dir)
    products = evaluate.golden_products(golden)
    summaries, series, defects = {}, {}, {}
    for name, adapter in (("sum_ref", None), *((n, r.adapter_dir) for n, r in runs.items())):
        logger.info("demo: %s summaries of %d golden products", name, len(products))
        summaries[name] = str(out / "summaries" / f"{name}.parquet")
        with raw_log() as raw_texts:  # what the policy wrote before serving, for the defect counts
            series[name] = evaluate.summarize_golden(products, tc.policy, summaries[name], policy_dir,
                                                     adapter)
        titles = products.set_index("product_id")["title"].reindex(series[name].index).tolist()
        defects[name] = defect_counts(series[name].tolist(), titles, raw_texts)
        release_memory()  # this policy's weights and generation buffers, before the next one loads
    lap("summarize")
    grounded = {name: groundedness_stats(s, products, n_boot=config.n_boot, seed=config.seed) for name,
                s in series.items()}
    sections = {"Groundedness": groundedness_section(series, products, n_boot=config.n_boot,
                                                     seed=config.seed)}
    first = next(iter(runs))
    if config.examples:
        sections[f"Examples: sum_ref and {first} side by side"] = examples_section(
            golden, series, scorer, ("sum_ref", first), n_queries=config.examples, seed=config.seed)
    evaluation = evaluate.run(EvaluateConfig(
        golden=golden_dir, reward_model=reward_model, summaries=summaries,
        out_dir=str(out / "evaluation"), n_boot=config.n_boot, seed=config.seed), scorer=scorer,
        extra_sections=sections)
    lap("evaluate")
    whole = load_golden(config.golden)
    answer = [headline(evaluation.metrics, name, whole_queries=ndcg_query_count(whole.judgments))
              for name in (*runs, "sum_ref") if name in evaluation.metrics["config"]["candidates"]]
    rss.stop()
    for name, r in runs.items():
        if r.mlflow_run_id:
            log_demo_evaluation(config.train.tracking, r.mlflow_run_id, evaluation, name,
                                {k: v for k, v in grounded.items() if k in ("sum_ref", name)})
    lines = [
        f"relsum demo: bundled Chorus/Icecat sample, {_policy_name(tc.policy.model_dir)} policy, "
        f"reward model {Path(reward_model).name}", *([size_note] if size_note else []), "",
        "Answer (NDCG@5 gain over title only, and what this evaluation can detect):",
        *(f"  {line}" for line in answer), "",
        reward_model_check.format_check(check), "", subset_note, "",
        evaluation.table, "",
        *(line for name, r in runs.items() for line in [*heldout_lines(r.heldout, name), ""]),
        *pooled_seed_lines({n: r.heldout for n, r in runs.items()}), *([""] if len(runs) > 1 else []),
        "Groundedness on the golden products (share of summary content tokens found in title + description; "
        "numbers: share of number tokens found):",
        *(f"  {name:<8} {g['groundedness']:.3f} [{g['ci_low']:.3f}, {g['ci_high']:.3f}]   numbers "
          f"{g['numbers_grounded']:.3f} ({g['n_with_numbers']} summaries with numbers)   empty {g['n_empty']}"
          for name, g in grounded.items()), "",
        *defect_lines(defects), *([""] if defects else []),
        f"pairs kept {pairs.stats['kept']} of {pairs.stats['pairs_in']}",
        *(f"{name}: MLflow run {r.mlflow_run_id} model version {r.model_version} adapter "
          f"{r.adapter_dir}" for name, r in runs.items()),
        f"policy {policy_dir}",
        f"report: {evaluation.paths.html}",
        f"timings (s): {json.dumps(timings)}  total {sum(timings.values()):.0f}",
        f"peak RSS (MB): {json.dumps(peak_rss)}  max {max(peak_rss.values()):.0f}",
    ]
    paths = {"policy_dir": policy_dir, "adapter_dir": trained.adapter_dir, "summaries": summaries,
             "adapters": {name: r.adapter_dir for name, r in runs.items()},
             "golden": golden_dir, "report": evaluation.paths.html, "reward_model": reward_model}
    result = {"validation": validation, "pairs": pairs.to_dict(), "train": trained.to_dict(),
              "evaluation": evaluation.metrics,
              "seeds": {name: r.to_dict() for name, r in runs.items()},
              "reward_model_check": check.to_dict(),
              "groundedness": grounded, "summary_defects": defects, "timings": timings,
              "peak_rss_mb": peak_rss, "paths": paths,
              "golden_subset": subset_note, "headline": answer,
              "size": size_note or "configured",
              "report_text": "\n".join(lines)}
    from relsum.data.io import write_json_atomic

    write_json_atomic(result, out / "demo_result.json")
    return result
