"""The table of ``relsum`` stages: one row per subcommand, one handler for all of them.

Each :class:`Stage` names its config class and run function as ``"module:attribute"`` strings that
are imported only when that stage runs (or its ``--help`` is printed), so building the parser, an
argument error and ``relsum --help`` load no stage module, let alone torch or TRL. A flag shortcut
(:class:`Flag`) puts its typed value straight into the config under its dotted key through
:func:`relsum.core.config.load_config`'s ``values``: no round trip through ``key=value`` text, so a path
such as ``runs/a #1`` or ``yes`` arrives as typed. Precedence: ``--config`` YAML < flags < trailing
``key=value`` overrides. The same design as TRL's CLI: a table of (name, config, entry point) and
one dispatcher.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

#: The stage groups (``relsum reward-model train``, ``relsum scores stats``) and their help lines.
GROUPS = {
    "reward-model": "Reward-model (cross-encoder) commands.",
    "scores": "Inspect and trim the persistent score store.",
}


@dataclasses.dataclass(frozen=True)
class Flag:
    """A shortcut flag. ``key`` is the dotted config key it sets; ``None``: read by the stage's own code.

    ``options`` are further ``argparse.add_argument`` keywords (``choices``, ``action``, ``nargs``,
    ``metavar``); ``convert`` turns the parsed value into the config value (e.g. ``NAME=FILE`` items
    into a dict).
    """

    name: str
    key: str | None
    help: str
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    convert: Callable[[Any], Any] | None = None

    @property
    def dest(self) -> str:
        return self.name.lstrip("-").replace("-", "_")


@dataclasses.dataclass(frozen=True)
class Stage:
    """One subcommand: its config class, its run function, its flags and how its result is printed.

    ``show(result, config, args)`` prints the result and returns the exit status; ``prepare(config)``
    fixes the config up before the run (e.g. bootstraps a missing reward model); ``run_args`` are
    flag destinations passed to the run function as keywords rather than set in the config.
    """

    command: str
    help: str
    config: str
    run: str
    flags: tuple[Flag, ...] = ()
    show: Callable[[Any, Any, argparse.Namespace], int] | None = None
    prepare: Callable[[Any], Any] | None = None
    run_args: tuple[str, ...] = ()

    def config_class(self) -> type:
        return resolve(self.config)


def resolve(target: str) -> Any:
    """``"package.module:attribute"`` -> the attribute, importing the module now (not at parser build)."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def flag_values(stage: Stage, args: argparse.Namespace) -> dict[str, Any]:
    """The config values the given flags set, by dotted key (flags left out are not in the dict)."""
    values = {}
    for flag in stage.flags:
        value = getattr(args, flag.dest, None)
        if flag.key is None or value is None:
            continue
        values[flag.key] = flag.convert(value) if flag.convert else value
    return values


def load_stage_config(stage: Stage, args: argparse.Namespace) -> Any:
    """The stage's config from ``--config`` YAML, the typed flag values, then ``key=value`` overrides."""
    from relsum.core.config import load_config

    return load_config(stage.config_class(), args.config, list(args.overrides or []),
                       values=flag_values(stage, args))


def run_stage(stage: Stage, args: argparse.Namespace) -> int:
    """The one handler: load the config, prepare it, run the stage, print the result; the exit status."""
    config = load_stage_config(stage, args)
    if stage.prepare is not None:
        config = stage.prepare(config)
    result = resolve(stage.run)(config, **{name: getattr(args, name) for name in stage.run_args})
    return (stage.show or show_json)(result, config, args)


# ---- how results are printed -------------------------------------------------------------------------------


def show_json(result: Any, config: Any, args: argparse.Namespace) -> int:
    if dataclasses.is_dataclass(result) and not isinstance(result, type):  # typed stage results (PairsResult)
        result = result.to_dict() if hasattr(result, "to_dict") else dataclasses.asdict(result)
    print(json.dumps(result, indent=2, default=str))
    return 0


def show_validation(report: dict, config: Any, args: argparse.Namespace) -> int:
    print(json.dumps(report, indent=2, default=str))
    return 1 if (args.strict and report["problems"]) else 0  # an empty table, or rejects > max_reject_rate


def show_reward_model(metrics: dict, config: Any, args: argparse.Namespace) -> int:
    def fmt(key: str) -> str:
        value = metrics.get(key)
        return "n/a" if value is None else f"{value:.4f}"

    print(f"reward model saved to {metrics['out_dir']} ({metrics.get('seconds', 0):.0f} s)\n"
          f"held-out NDCG@5: title {fmt('ndcg5_title')}, title + text {fmt('ndcg5_full')}, "
          f"title + lead-40 {fmt('ndcg5_lead')}; reward -|r - l| {fmt('reward')}")
    from relsum.pipelines import reward_model_check  # the ranker check, on the eval folder, before any RL
    from relsum.pipelines.configs import RewardModelCheckConfig

    check = reward_model_check.run(RewardModelCheckConfig(
        reward_model=metrics["out_dir"], golden=config.eval_dir,
        out_dir=str(Path(metrics["out_dir"]).parent / "reward_model_check")))
    print(reward_model_check.format_check(check))
    return 0


def show_ranker_check(result: Any, config: Any, args: argparse.Namespace) -> int:
    """The :class:`relsum.evaluation.ranker_check.CheckResult` as text, verdict first, and where its
    JSON is."""
    from relsum.pipelines.reward_model_check import RESULT_FILE, format_check

    print(format_check(result))
    print(f"written: {config.resolved_out_dir() / RESULT_FILE}")
    return 0


def show_evaluation(result: Any, config: Any, args: argparse.Namespace) -> int:
    """The :class:`relsum.pipelines.evaluate.EvaluationResult`'s gains table and where the report is."""
    print(result.table)
    print(f"\nreport: {result.paths.html}  metrics: {result.paths.metrics}")
    return 0


def show_training(result: Any, config: Any, args: argparse.Namespace) -> int:
    """The :class:`relsum.pipelines.train.TrainResult` as JSON, without TRL's per-step log."""
    return show_json(result.to_dict(), config, args)


def show_summaries(manifest: dict, config: Any, args: argparse.Namespace) -> int:
    return show_json(manifest.get("counts", manifest), config, args)


def show_comparison(result: dict, config: Any, args: argparse.Namespace) -> int:
    print(result["table"])
    for kind, path in result["paths"].items():
        print(f"{kind}: {path}")
    return 0


def show_score_stats(rows: list[dict], config: Any, args: argparse.Namespace) -> int:
    from relsum.pipelines.scores import auto_choices, format_stats

    print(format_stats(rows, auto_choices(config)))
    return 0


def show_key(key: str) -> Callable[[dict, Any, argparse.Namespace], int]:
    """Print one text field of the result (the ablation's markdown, the demo's report)."""

    def show(result: dict, config: Any, args: argparse.Namespace) -> int:
        print(result[key])
        return 0

    return show


# ---- flag conversions and config fix-ups -------------------------------------------------------------------


def summaries_by_name(items: list[str]) -> dict[str, str]:
    """``["mine=a.csv", "base=b.csv"]`` -> ``{"mine": "a.csv", "base": "b.csv"}`` (``--summaries
    NAME=FILE``)."""
    from relsum.core.errors import InputError

    pairs = {}
    for item in items:
        if "=" not in item:
            raise InputError(f"--summaries expects NAME=FILE, got {item!r}")
        name, path = item.split("=", 1)
        pairs[name] = path
    return pairs


def with_reward_model(config: Any) -> Any:
    """Bootstrap (once) the default reward model when none is given, as ``relsum pairs`` always has."""
    from relsum.pipelines.reward_model import ensure_reward_model

    config.reward_model = ensure_reward_model(config.reward_model)
    return config


# ---- the table ---------------------------------------------------------------------------------------------

TABLE_HELP = "Catalog table (CSV, JSONL, Parquet or duckdb:<db>:<table|query>)."


def out_flag(text: str = "Output folder.") -> Flag:
    return Flag("--out", "out_dir", text)


def reward_model_flag() -> Flag:
    return Flag("--reward-model", "reward_model", "Local cross-encoder folder.")


STAGES: tuple[Stage, ...] = (
    Stage("validate", "Check input tables against their contracts; write rejects with reasons.",
          "relsum.pipelines.configs:ValidateConfig", "relsum.pipelines.validate:run", (
              Flag("--catalog", "catalog", TABLE_HELP),
              Flag("--search-log", "search_log", "Search-log pairs table."),
              Flag("--queries", "queries", "Golden queries table."),
              Flag("--judgments", "judgments", "Golden judgments table."),
              out_flag("Output folder for rejects/, clean/ and validation.json."),
              Flag("--strict", None, "Exit with status 1 when a table ends up empty or rejects more than "
                   "max_reject_rate of its rows (default 0: any reject).", {"action": "store_true"}),
          ), show=show_validation),
    Stage("reward-model train", "Bootstrap a cross-encoder from the bundled MiniLM weights "
                                "on graded judgments.",
          "relsum.pipelines.configs:RewardModelStageConfig", "relsum.pipelines.reward_model:run", (
              Flag("--train", "train_dir", "Golden-layout folder to train on."),
              Flag("--eval", "eval_dir", "Golden-layout folder with held-out queries."),
              out_flag("Output model folder."),
          ), show=show_reward_model),
    Stage("reward-model check", "Does a ranker read text? NDCG@5 of title vs title + text / lead-N words, "
                                "calibration, fact sensitivity and a verdict.",
          "relsum.pipelines.configs:RewardModelCheckConfig", "relsum.pipelines.reward_model_check:run", (
              Flag("--model", "reward_model", "Local cross-encoder folder to check (default: the bootstrap "
                                              "model in RELSUM_HOME, trained once if missing)."),
              Flag("--golden", "golden", "Golden-layout folder (default: the bundled sample's golden set)."),
              Flag("--lead-words", "lead_words", "N of title + lead-N words (default: the served summary "
                                                 "word cap).", {"type": int}),
              out_flag("Folder for reward_model_check.json."),
          ), show=show_ranker_check, prepare=with_reward_model),
    Stage("evaluate", "The paper's offline table: R@90P and NDCG@5 gains over title-only.",
          "relsum.pipelines.configs:EvaluateConfig", "relsum.pipelines.evaluate:run", (
              Flag("--golden", "golden", "Golden-layout folder (default: the bundled sample's golden set)."),
              reward_model_flag(),
              Flag("--summaries", "summaries", "A summaries candidate (columns product_id, "
                                               "summary); repeatable.",
                   {"action": "append", "metavar": "NAME=FILE"}, convert=summaries_by_name),
              out_flag(),
          ), show=show_evaluation),
    Stage("pairs", "Extract, score and filter training pairs from the search log.",
          "relsum.pipelines.configs:BuildPairsConfig", "relsum.pipelines.build_pairs:run", (
              Flag("--search-log", "search_log", "Search-log pairs table."),
              Flag("--catalog", "catalog", "Catalog table."),
              reward_model_flag(),
              out_flag(),
          ), prepare=with_reward_model),
    Stage("train", "Train the LoRA summarizer with GRPO, DPO or RFT against the frozen scorer.",
          "relsum.pipelines.configs:TrainStageConfig", "relsum.pipelines.train:run", (
              Flag("--algo", "trainer.algo", "Training algorithm (trainer.algo).",
                   {"choices": ["grpo", "dpo", "rft"]}),
          ), show=show_training),
    Stage("summarize", "Summarize every product (or, incrementally, the new and changed ones).",
          "relsum.summarize.config:SummarizeConfig", "relsum.pipelines.summarize:run", (
              Flag("--catalog", "catalog", "Catalog table."),
              Flag("--model", "model_dir", "Local causal-LM folder (the policy)."),
              Flag("--adapter", "adapter_dir", "LoRA adapter folder (optional)."),
              out_flag("Output folder (Parquet shards, index, manifest, rejects)."),
              Flag("--incremental", "incremental", "Only summarize products new or changed since the last "
                   "committed run.", {"action": argparse.BooleanOptionalAction, "default": None}),
              Flag("--backend", "backend", "Generation backend.", {"choices": ["hf", "ray", "vllm"]}),
              Flag("--partition", None, "Output partition key (e.g. a data-interval date); "
                                        "reruns are idempotent."),
              Flag("--best-of", "best_of", "N > 1: products with logged queries keep the best of greedy + N "
                   "samples by product-level reward on those queries (needs --search-log and "
                   "--reward-model).", {"type": int, "metavar": "N"}),
              Flag("--search-log", "search_log", "Search log giving each product's queries (for --best-of)."),
              Flag("--reward-model", "reward_model", "Local cross-encoder folder scoring the --best-of "
                                                     "candidates."),
          ), show=show_summaries, run_args=("partition",)),
    Stage("export-interleaving", "Write seeded team-draft interleaved lists (title-only vs title+summary).",
          "relsum.pipelines.configs:ExportConfig", "relsum.pipelines.interleaving:run_export", (
              Flag("--candidates", "candidates", "Candidate products per query "
                                                 "(query_id, query, product_id)."),
              Flag("--catalog", "catalog", "Catalog table (titles)."),
              Flag("--summaries", "summaries", "Summaries table (product_id, summary)."),
              reward_model_flag(),
              out_flag(),
          )),
    Stage("analyze-interleaving", "Wins, losses, ties, delta and sign test from logged events.",
          "relsum.pipelines.configs:AnalyzeConfig", "relsum.pipelines.interleaving:run_analyze", (
              Flag("--export", "export", "interleaved.parquet from export-interleaving."),
              Flag("--events", "events", "Logged events table."),
              out_flag(),
          )),
    Stage("compare", "MLflow runs side by side: eval metrics with CIs, key params, versions, champion.",
          "relsum.pipelines.configs:CompareConfig", "relsum.pipelines.compare:run", (
              Flag("--experiment", "experiment", "MLflow experiment (default: tracking.experiment)."),
              Flag("--runs", "runs", "Run ids to compare (default: the newest max_runs runs).",
                   {"nargs": "+", "metavar": "ID"}),
              out_flag("Write comparison.md / comparison.html / ndcg.png here."),
              Flag("--format", "format", "Report format(s).", {"choices": ["md", "html", "both"]}),
          ), show=show_comparison),
    Stage("scores stats", "Rows, parts, bytes, last write and cached gates per scorer fingerprint.",
          "relsum.pipelines.configs:StatsConfig", "relsum.pipelines.scores:stats", show=show_score_stats),
    Stage("scores prune", "Drop fingerprints not kept (or older than N days) and compact parts.",
          "relsum.pipelines.configs:PruneConfig", "relsum.pipelines.scores:prune"),
    Stage("label-ray", "Label pairs (r(q,t), r(q,[t;d]), gap, proxy label) on Ray Data; resumable.",
          "relsum.scoring.config:RayLabelConfig", "relsum.scoring.ray_label:run"),
    Stage("ablate", "GRPO options ablation (paper, each option alone, all combined) on the bundled sample.",
          "relsum.pipelines.configs:AblateConfig", "relsum.pipelines.ablate:run", (out_flag(),),
          show=show_key("markdown")),
    Stage("demo", "The whole pipeline on the bundled sample (SmolLM2 policy; ~20 min on 2 cores).",
          "relsum.pipelines.configs:DemoConfig", "relsum.pipelines.demo:run", (out_flag(),),
          show=show_key("report_text")),
)


def stage_named(command: str) -> Stage:
    """The table row of ``command`` (``"evaluate"``, ``"reward-model train"``)."""
    for stage in STAGES:
        if stage.command == command:
            return stage
    raise KeyError(command)
