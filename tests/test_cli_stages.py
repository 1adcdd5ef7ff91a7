"""The stage table behind ``relsum``: every row resolves, flags arrive typed, and answering is cheap.

Start-up cost is asserted as *which modules get imported*, never as seconds, so the tests do not
depend on the CPU they run on.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pandas as pd
import pytest

from relsum.cli import build_parser, main
from relsum.cli_stages import STAGES, flag_values, load_stage_config, resolve, stage_named
from relsum.core.config import field_help

HEAVY = ("torch", "transformers", "trl", "peft", "sentence_transformers", "mlflow", "pandas", "duckdb")


def _loaded_after(script: str) -> dict:
    """Run ``script`` in a fresh interpreter; it prints a JSON dict of what it wants checked."""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_help_and_argument_errors_import_no_stage_and_no_heavy_library():
    script = f"""
import contextlib, io, json, sys
from relsum.cli import build_parser, main
codes = []
for argv in (["--help"], ["validate", "--bogus"], ["train", "--algo", "ppo"], ["scores"], ["nope"]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(argv)
        except SystemExit as exc:
            codes.append(exc.code)
build_parser().parse_args(["validate", "--catalog", "x.csv", "out_dir=y"])
heavy = [m for m in {HEAVY!r} if m in sys.modules]
stages = sorted(m for m in sys.modules
                if m.startswith(("relsum.pipelines", "relsum.summarize", "relsum.scoring")))
print(json.dumps({{"codes": codes, "heavy": heavy, "stages": stages}}))
"""
    seen = _loaded_after(script)
    assert seen["codes"] == [0, 2, 2, 2, 2]
    assert seen["heavy"] == [] and seen["stages"] == []


@pytest.mark.parametrize("command", ["train", "summarize", "pairs"])
def test_stage_help_lists_keys_without_torch_or_trl(command):
    """A stage's --help imports its config module only: no torch, transformers, TRL or PEFT for defaults."""
    script = f"""
import contextlib, io, json, sys
from relsum.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        main({command.split()!r} + ["--help"])
    except SystemExit:
        pass
print(json.dumps({{"heavy": [m for m in ("torch", "transformers", "trl", "peft") if m in sys.modules],
                  "help": out.getvalue()}}))
"""
    seen = _loaded_after(script)
    assert seen["heavy"] == []
    keys = field_help(stage_named(command).config_class())
    assert all(key in seen["help"] for key in keys)


def test_every_row_resolves_and_every_flag_sets_a_real_key():
    commands = [stage.command for stage in STAGES]
    assert len(set(commands)) == len(commands) and len(STAGES) == 15
    for stage in STAGES:
        config_cls = stage.config_class()
        assert dataclasses.is_dataclass(config_cls) and callable(resolve(stage.run))
        keys = field_help(config_cls)
        for flag in stage.flags:
            assert flag.key is None or flag.key in keys, (stage.command, flag.name)


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.command)
def test_every_stage_help_lists_every_config_key_with_its_default(stage, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*stage.command.split(), "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for key in field_help(stage.config_class()):
        assert f"  {key}\n" in out, key
    assert "(default: " in out


def test_flags_arrive_typed_without_a_yaml_round_trip(tmp_path, capsys):
    """A path with ' #' (a YAML comment) or the word 'yes' (a YAML boolean) stays the string it was typed
    as."""
    feed = tmp_path / "feed #1"
    feed.mkdir()
    catalog = feed / "catalog.csv"
    pd.DataFrame({"product_id": ["p1"], "title": ["Drill"],
                  "description": ["18 V"]}).to_csv(catalog, index=False)
    out = tmp_path / "out: v"
    assert main(["validate", "--catalog", str(catalog), "--out", str(out)]) == 0
    report = json.loads((out / "validation.json").read_text())
    assert report["tables"]["catalog"]["source"] == str(catalog)

    args = build_parser().parse_args(["evaluate", "--summaries", "a=x #1.csv", "--summaries", "b=yes"])
    assert flag_values(stage_named("evaluate"), args) == {"summaries": {"a": "x #1.csv", "b": "yes"}}
    args = build_parser().parse_args(["compare", "--experiment", "yes", "--runs", "r1", "null"])
    config = load_stage_config(args.stage, args)
    assert config.experiment == "yes" and config.runs == ["r1", "null"]


def test_yaml_then_flags_then_overrides(tmp_path):
    config_file = tmp_path / "v.yaml"
    config_file.write_text("catalog: from_yaml.csv\nqueries: q_yaml.csv\nout_dir: o_yaml\n")
    parser = build_parser()
    stage = stage_named("validate")
    args = parser.parse_args(["validate", "--config", str(config_file), "--catalog", "flag.csv", "--out",
                              "o_flag"])
    config = load_stage_config(stage, args)
    assert (config.catalog, config.queries, config.out_dir) == ("flag.csv", "q_yaml.csv", "o_flag")
    args = parser.parse_args(["validate", "--config", str(config_file), "--catalog", "flag.csv",
                              "catalog=kv.csv"])
    assert load_stage_config(stage, args).catalog == "kv.csv"
    args = parser.parse_args(["train", "--algo", "dpo", "trainer.grpo.learning_rate=2e-5"])
    config = load_stage_config(stage_named("train"), args)
    assert config.trainer.algo == "dpo" and config.trainer.grpo.learning_rate == 2e-5


def test_group_commands_dispatch_to_their_stage(tmp_path, capsys):
    args = build_parser().parse_args(["reward-model", "train", "--train", "t", "--eval", "e", "--out", "o"])
    assert args.stage is stage_named("reward-model train")
    assert flag_values(args.stage, args) == {"train_dir": "t", "eval_dir": "e", "out_dir": "o"}
    args = build_parser().parse_args(["summarize", "--no-incremental", "--partition", "2024-01-01"])
    # --partition goes to run(), not the config
    assert flag_values(args.stage, args) == {"incremental": False}
    assert args.partition == "2024-01-01"
