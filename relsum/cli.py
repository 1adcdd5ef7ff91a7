"""The ``relsum`` command. Every subcommand is a row of the stage table in ``relsum.cli_stages``.

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
import warnings

from relsum.cli_stages import GROUPS, STAGES, Stage, run_stage

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# transformers' "Loading weights" / "Writing model shards" bars on every model load: off in the main job
# (relsum's own progress bars and the trainer's stay); a user's own setting wins.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

logger = logging.getLogger("relsum")


def keys_epilog(config_cls: type) -> str:
    """Every config key of a stage with its help and effective default, for ``relsum <stage> --help``."""
    from relsum.core.config import field_help

    lines = ["config keys (set in --config YAML or as key=value):"]
    for key, text in field_help(config_cls).items():
        lines.append(f"  {key}\n" + textwrap.indent(textwrap.fill(text, 90), "      "))
    return "\n".join(lines)


class StageParser(argparse.ArgumentParser):
    """A parser whose stage's config keys are listed only when its help is printed.

    Building the epilog imports the stage's config module and builds its default config; doing it lazily
    keeps ``relsum --help``, argument errors and every other stage free of even that. Config modules load
    no pandas, numpy or torch (``tests/test_cli_imports.py``), so a stage's ``--help`` is fast too.
    """

    def __init__(self, *args, stage: Stage | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.stage = stage

    def format_help(self) -> str:
        if self.stage is not None and self.epilog is None:
            self.epilog = keys_epilog(self.stage.config_class())
        return super().format_help()


def add_stage_parser(sub, name: str, stage: Stage) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=stage.help, description=stage.help, stage=stage,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML file with this stage's config keys.")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="Override single config keys.")
    for flag in stage.flags:
        parser.add_argument(flag.name, dest=flag.dest, help=flag.help, **flag.options)
    parser.set_defaults(stage=stage)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The whole ``relsum`` parser from :data:`relsum.cli_stages.STAGES`; imports no stage module."""
    parser = StageParser(prog="relsum", description=__doc__,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="Debug logging.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    groups = {}  # group name -> its subparsers
    for stage in STAGES:
        group, _, action = stage.command.rpartition(" ")
        if not group:
            add_stage_parser(sub, action, stage)
            continue
        if group not in groups:
            group_parser = sub.add_parser(group, help=GROUPS[group], description=GROUPS[group])
            groups[group] = group_parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        add_stage_parser(groups[group], action, stage)
    return parser


def user_error_line(exc: BaseException) -> str | None:
    """The one line printed for an error from the user's input or environment; None for a bug.

    ``RelsumError`` messages already say what and where. A bare ``OSError`` about a path (permission
    denied, missing, a file where a folder is expected, read-only or full disk) gets its reason and
    the path; every other exception is a bug or a library failure and keeps its traceback.
    """
    from relsum.core.errors import RelsumError, is_environment_oserror, os_error_text

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
    # PEFT and TRL call transformers' old `*gradient_checkpointing*` names, which warn on every policy load
    # and training run: nothing a user can act on (the libraries' own calls), so the main job's output stays
    # clear of them (the loaders' per-model progress bars are off through HF_HUB_DISABLE_PROGRESS_BARS above).
    warnings.filterwarnings("ignore", category=FutureWarning,
                            message=r"`(is_)?gradient_checkpointing(_enable|_disable)?` is deprecated")
    stage: Stage = args.stage
    try:
        return run_stage(stage, args)
    except Exception as exc:
        line = user_error_line(exc)
        if line is None or args.verbose:
            raise
        print(f"relsum {stage.command}: error: {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
