"""The ``relsum`` command. Every subcommand is a thin shell over one stage in ``relsum.pipelines``.

Each stage has a typed config; ``--config FILE`` loads it from YAML, trailing ``key=value`` arguments
override single fields (dotted keys reach nested sections), and the friendlier flags below are
shortcuts for the most used keys. ``relsum <command> --help`` lists every config key with its help.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
from collections.abc import Callable

from relsum.cli_commands import (
    _load as _load,  # re-exported: callers and tests load configs through relsum.cli
)
from relsum.cli_commands import (
    cmd_ablate,
    cmd_analyze_interleaving,
    cmd_compare,
    cmd_demo,
    cmd_evaluate,
    cmd_export_interleaving,
    cmd_label_ray,
    cmd_pairs,
    cmd_reward_model,
    cmd_scores_prune,
    cmd_scores_stats,
    cmd_summarize,
    cmd_train,
    cmd_validate,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

logger = logging.getLogger("relsum")


def _keys_epilog(config_cls: type) -> str:
    from relsum.config import field_help

    lines = ["config keys (set in --config YAML or as key=value):"]
    for key, text in field_help(config_cls).items():
        lines.append(f"  {key}\n" + textwrap.indent(textwrap.fill(text, 90), "      "))
    return "\n".join(lines)


def _stage_parser(sub, name: str, help_text: str, config_cls: type) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text, epilog=_keys_epilog(config_cls),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML file with this stage's config keys.")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="Override single config keys.")
    return parser


def build_parser() -> argparse.ArgumentParser:
    from relsum.pipelines.ablate import AblateConfig
    from relsum.pipelines.build_pairs import BuildPairsConfig
    from relsum.pipelines.compare import CompareConfig
    from relsum.pipelines.demo import DemoConfig
    from relsum.pipelines.evaluate import EvaluateConfig
    from relsum.pipelines.interleaving import AnalyzeConfig, ExportConfig
    from relsum.pipelines.reward_model import RewardModelStageConfig
    from relsum.pipelines.scores import PruneConfig, StatsConfig
    from relsum.pipelines.train import TrainStageConfig
    from relsum.pipelines.validate import ValidateConfig
    from relsum.scoring.ray_label import RayLabelConfig
    from relsum.summarize.job import SummarizeConfig

    parser = argparse.ArgumentParser(prog="relsum", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="Debug logging.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _stage_parser(sub, "validate", "Check input tables against their contracts; write rejects with reasons.", ValidateConfig)
    p.add_argument("--catalog", help="Catalog table (CSV, JSONL, Parquet or duckdb:<db>:<table|query>).")
    p.add_argument("--search-log", dest="search_log", help="Search-log pairs table.")
    p.add_argument("--queries", help="Golden queries table.")
    p.add_argument("--judgments", help="Golden judgments table.")
    p.add_argument("--out", help="Output folder for rejects/, clean/ and validation.json.")
    p.add_argument("--strict", action="store_true", help="Exit with status 1 when a table ends up empty or rejects more than "
                   "max_reject_rate of its rows (default 0: any reject).")
    p.set_defaults(func=cmd_validate)

    rm = sub.add_parser("reward-model", help="Reward-model (cross-encoder) commands.")
    rm_sub = rm.add_subparsers(dest="rm_command", required=True, metavar="ACTION")
    p = _stage_parser(rm_sub, "train", "Bootstrap a cross-encoder from the bundled MiniLM weights on graded judgments.",
                      RewardModelStageConfig)
    p.add_argument("--train", help="Golden-layout folder to train on.")
    p.add_argument("--eval", help="Golden-layout folder with held-out queries.")
    p.add_argument("--out", help="Output model folder.")
    p.set_defaults(func=cmd_reward_model)

    p = _stage_parser(sub, "evaluate", "The paper's offline table: R@90P and NDCG@5 gains over title-only.", EvaluateConfig)
    p.add_argument("--golden", help="Golden-layout folder (default: the bundled sample's golden set).")
    p.add_argument("--reward-model", dest="reward_model", help="Local cross-encoder folder.")
    p.add_argument("--summaries", action="append", metavar="NAME=FILE",
                   help="A summaries candidate (columns product_id, summary); repeatable.")
    p.add_argument("--out", help="Output folder.")
    p.set_defaults(func=cmd_evaluate)

    p = _stage_parser(sub, "pairs", "Extract, score and filter training pairs from the search log.", BuildPairsConfig)
    p.add_argument("--search-log", dest="search_log", help="Search-log pairs table.")
    p.add_argument("--catalog", help="Catalog table.")
    p.add_argument("--reward-model", dest="reward_model", help="Local cross-encoder folder.")
    p.add_argument("--out", help="Output folder.")
    p.set_defaults(func=cmd_pairs)

    p = _stage_parser(sub, "train", "Train the LoRA summarizer with GRPO or DPO against the frozen scorer.", TrainStageConfig)
    p.add_argument("--algo", choices=["grpo", "dpo"], help="Training algorithm (train.algo).")
    p.set_defaults(func=cmd_train)

    p = _stage_parser(sub, "summarize", "Summarize every product (or, incrementally, the new and changed ones).",
                      SummarizeConfig)
    p.add_argument("--catalog", help="Catalog table.")
    p.add_argument("--model", help="Local causal-LM folder (the policy).")
    p.add_argument("--adapter", help="LoRA adapter folder (optional).")
    p.add_argument("--out", help="Output folder (Parquet shards, index, manifest, rejects).")
    p.add_argument("--incremental", action=argparse.BooleanOptionalAction, default=None,
                   help="Only summarize products new or changed since the last committed run.")
    p.add_argument("--backend", choices=["hf", "ray", "vllm"], help="Generation backend.")
    p.add_argument("--partition", help="Output partition key (e.g. a data-interval date); reruns are idempotent.")
    p.set_defaults(func=cmd_summarize)

    p = _stage_parser(sub, "export-interleaving", "Write seeded team-draft interleaved lists (title-only vs title+summary).",
                      ExportConfig)
    p.add_argument("--candidates", help="Candidate products per query (query_id, query, product_id).")
    p.add_argument("--catalog", help="Catalog table (titles).")
    p.add_argument("--summaries", help="Summaries table (product_id, summary).")
    p.add_argument("--reward-model", dest="reward_model", help="Local cross-encoder folder.")
    p.add_argument("--out", help="Output folder.")
    p.set_defaults(func=cmd_export_interleaving)

    p = _stage_parser(sub, "analyze-interleaving", "Wins, losses, ties, delta and sign test from logged events.",
                      AnalyzeConfig)
    p.add_argument("--export", help="interleaved.parquet from export-interleaving.")
    p.add_argument("--events", help="Logged events table.")
    p.add_argument("--out", help="Output folder.")
    p.set_defaults(func=cmd_analyze_interleaving)

    p = _stage_parser(sub, "compare", "MLflow runs side by side: eval metrics with CIs, key params, versions, champion.",
                      CompareConfig)
    p.add_argument("--experiment", help="MLflow experiment (default: tracking.experiment).")
    p.add_argument("--runs", nargs="+", metavar="ID", help="Run ids to compare (default: the newest max_runs runs).")
    p.add_argument("--out", help="Write comparison.md / comparison.html / ndcg.png here.")
    p.add_argument("--format", choices=["md", "html", "both"], help="Report format(s).")
    p.set_defaults(func=cmd_compare)

    sc = sub.add_parser("scores", help="Inspect and trim the persistent score store.")
    sc_sub = sc.add_subparsers(dest="scores_command", required=True, metavar="ACTION")
    p = _stage_parser(sc_sub, "stats", "Rows, parts, bytes, last write and cached gates per scorer fingerprint.", StatsConfig)
    p.set_defaults(func=cmd_scores_stats)
    p = _stage_parser(sc_sub, "prune", "Drop fingerprints not kept (or older than N days) and compact parts.", PruneConfig)
    p.set_defaults(func=cmd_scores_prune)

    p = _stage_parser(sub, "label-ray", "Label pairs (r(q,t), r(q,[t;d]), gap, proxy label) on Ray Data; resumable.",
                      RayLabelConfig)
    p.set_defaults(func=cmd_label_ray)

    p = _stage_parser(sub, "ablate", "GRPO options ablation (paper, each option alone, all combined) on the bundled sample.",
                      AblateConfig)
    p.add_argument("--out", help="Output folder.")
    p.set_defaults(func=cmd_ablate)

    p = _stage_parser(sub, "demo", "The whole pipeline on the bundled sample, end to end at tiny size.", DemoConfig)
    p.add_argument("--out", help="Output folder.")
    p.set_defaults(func=cmd_demo)
    return parser


def user_error_line(exc: BaseException) -> str | None:
    """The one line printed for an error from the user's input or environment; None for a bug.

    ``RelsumError`` messages already say what and where. A bare ``OSError`` about a path (permission
    denied, missing, a file where a folder is expected, read-only or full disk) gets its reason and
    the path; every other exception is a bug or a library failure and keeps its traceback.
    """
    from relsum.errors import RelsumError, is_environment_oserror, os_error_text

    if isinstance(exc, RelsumError):
        text = str(exc)
    elif is_environment_oserror(exc):
        text = os_error_text(exc)  # type: ignore[arg-type]
    else:
        return None
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; input/environment errors print one line and return 2 (``-v``: traceback)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "urllib3", "alembic", "mlflow", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    handler: Callable[[argparse.Namespace], int] = args.func
    try:
        return handler(args)
    except Exception as exc:
        line = user_error_line(exc)
        if line is None or args.verbose:
            raise
        print(f"relsum {args.command}: error: {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
