"""The ``relsum`` subcommand handlers: each loads its stage's config and runs the stage.

Split out of :mod:`relsum.cli`, which builds the parser and wires each subcommand to a handler here.
Stage modules are imported inside the handlers so ``relsum --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json


def _load(config_cls: type, args: argparse.Namespace, flags: dict[str, str]) -> object:
    """Config from YAML + flag shortcuts + key=value overrides (explicit overrides win)."""
    from relsum.config import load_config

    shortcuts = []
    for attr, key in flags.items():
        value = getattr(args, attr, None)
        if value is None:
            continue
        if isinstance(value, list):
            value = "[" + ", ".join(json.dumps(v) for v in value) + "]"
        shortcuts.append(f"{key}={value}")
    return load_config(config_cls, args.config, shortcuts + list(args.overrides or []))


def _summaries_arg(values: list[str] | None) -> str | None:
    if not values:
        return None
    pairs = {}
    for item in values:
        if "=" not in item:
            from relsum.errors import InputError

            raise InputError(f"--summaries expects NAME=FILE, got {item!r}")
        name, path = item.split("=", 1)
        pairs[name] = path
    return json.dumps(pairs)


def cmd_validate(args) -> int:
    from relsum.pipelines.validate import ValidateConfig, run

    config = _load(ValidateConfig, args, {"catalog": "catalog", "search_log": "search_log", "queries": "queries",
                                          "judgments": "judgments", "out": "out_dir"})
    report = run(config)
    print(json.dumps(report, indent=2, default=str))
    return 1 if (args.strict and report["problems"]) else 0  # an empty table, or rejects > max_reject_rate


def cmd_reward_model(args) -> int:
    from relsum.pipelines.reward_model import RewardModelStageConfig, run

    config = _load(RewardModelStageConfig, args, {"train": "train_dir", "eval": "eval_dir", "out": "out_dir"})
    metrics = run(config)
    print(f"reward model saved to {metrics['out_dir']}\n"
          f"held-out NDCG@5: untrained start {metrics['ndcg5_untrained']:.4f} -> trained {metrics['ndcg5_trained']:.4f}")
    return 0


def cmd_evaluate(args) -> int:
    from relsum.pipelines.evaluate import EvaluateConfig, run

    args.summaries = _summaries_arg(args.summaries)
    config = _load(EvaluateConfig, args, {"golden": "golden", "reward_model": "reward_model",
                                          "summaries": "summaries", "out": "out_dir"})
    result = run(config)
    print(result["table"])
    print(f"\nreport: {result['paths'].get('html')}  metrics: {result['paths']['metrics']}")
    return 0


def cmd_pairs(args) -> int:
    from relsum.pipelines.build_pairs import BuildPairsConfig, run
    from relsum.pipelines.reward_model import ensure_reward_model

    config = _load(BuildPairsConfig, args, {"search_log": "search_log", "catalog": "catalog",
                                            "reward_model": "reward_model", "out": "out_dir"})
    config.reward_model = ensure_reward_model(config.reward_model)
    result = run(config)
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_train(args) -> int:
    from relsum.pipelines.train import TrainStageConfig, run

    config = _load(TrainStageConfig, args, {"algo": "train.algo"})
    result = run(config)
    print(json.dumps({k: v for k, v in result.items() if k != "log_history"}, indent=2, default=str))
    return 0


def cmd_summarize(args) -> int:
    from relsum.pipelines.summarize import run
    from relsum.summarize.job import SummarizeConfig

    config = _load(SummarizeConfig, args, {"catalog": "catalog", "model": "model_dir", "adapter": "adapter_dir",
                                           "out": "out_dir", "incremental": "incremental", "backend": "backend"})
    manifest = run(config, partition=args.partition)
    print(json.dumps(manifest.get("counts", manifest), indent=2, default=str))
    return 0


def cmd_export_interleaving(args) -> int:
    from relsum.pipelines.interleaving import ExportConfig, run_export

    config = _load(ExportConfig, args, {"candidates": "candidates", "catalog": "catalog", "summaries": "summaries",
                                        "reward_model": "reward_model", "out": "out_dir"})
    result = run_export(config)
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_analyze_interleaving(args) -> int:
    from relsum.pipelines.interleaving import AnalyzeConfig, run_analyze

    config = _load(AnalyzeConfig, args, {"export": "export", "events": "events", "out": "out_dir"})
    result = run_analyze(config)
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_compare(args) -> int:
    from relsum.pipelines.compare import CompareConfig, run

    config = _load(CompareConfig, args, {"experiment": "experiment", "runs": "runs", "out": "out_dir",
                                         "format": "format"})
    result = run(config)
    print(result["table"])
    for kind, path in result["paths"].items():
        print(f"{kind}: {path}")
    return 0


def cmd_ablate(args) -> int:
    from relsum.pipelines.ablate import AblateConfig, run

    result = run(_load(AblateConfig, args, {"out": "out_dir"}))
    print(result["markdown"])
    return 0


def cmd_scores_stats(args) -> int:
    from relsum.pipelines.scores import StatsConfig, auto_choices, format_stats, stats

    config = _load(StatsConfig, args, {})
    print(format_stats(stats(config), auto_choices(config)))
    return 0


def cmd_scores_prune(args) -> int:
    from relsum.pipelines.scores import PruneConfig, prune

    print(json.dumps(prune(_load(PruneConfig, args, {})), indent=2, default=str))
    return 0


def cmd_label_ray(args) -> int:
    from relsum.scoring.ray_label import RayLabelConfig, run

    print(json.dumps(run(_load(RayLabelConfig, args, {})), indent=2, default=str))
    return 0


def cmd_demo(args) -> int:
    from relsum.pipelines.demo import DemoConfig, run

    config = _load(DemoConfig, args, {"out": "out_dir"})
    result = run(config)
    print(result["report_text"])
    return 0
