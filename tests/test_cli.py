"""The ``relsum`` command: help for every subcommand, real runs of validate and evaluate, clear errors."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from relsum.cli import build_parser, main
from relsum.cli_stages import load_stage_config

SUBCOMMANDS = ["validate", "evaluate", "pairs", "train", "summarize", "export-interleaving", "compare",
               "ablate", "analyze-interleaving", "demo"]


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_explains_its_config_keys(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "config keys" in out and "key=value" in out


def test_console_script_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "relsum.cli", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "demo" in result.stdout


def test_validate_reports_rejects_and_strict_fails(tmp_path, capsys):
    catalog = tmp_path / "catalog.csv"
    pd.DataFrame({"product_id": ["p1", "p1", ""], "title": ["A", "B", "C"],
                  "description": ["x", "y", "z"]}).to_csv(catalog, index=False)
    assert main(["validate", "--catalog", str(catalog), "--out", str(tmp_path / "v")]) == 0
    assert main(["validate", "--catalog", str(catalog), "--out", str(tmp_path / "v"), "--strict"]) == 1
    rejects = pd.read_csv(tmp_path / "v" / "rejects" / "catalog.csv")
    assert len(rejects) == 2 and rejects["reason"].str.contains("duplicate").any()
    assert rejects["reason"].str.contains("missing").any()


def test_evaluate_on_a_golden_folder(tmp_path, tiny_cross_encoder_dir, golden_subset, capsys):
    golden = golden_subset(6)
    judgments = pd.read_csv(golden / "judgments.csv", dtype=str)
    summaries = tmp_path / "s.csv"
    pd.DataFrame({"product_id": judgments.product_id.unique(),
                  "summary": "black usb"}).to_csv(summaries, index=False)
    out = tmp_path / "eval"
    code = main(["evaluate", "--golden", str(golden), "--reward-model", str(tiny_cross_encoder_dir),
                 "--summaries", f"mine={summaries}", "--out", str(out), "n_boot=50"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| desc |" in printed and "| mine |" in printed
    scores = pd.read_parquet(out / "scores.parquet")
    assert {"score_none", "score_desc", "score_mine", "label", "tail"} <= set(scores.columns)
    assert len(scores) == len(judgments)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["subsets"]) == {"full", "tail"}
    assert (out / "report.html").exists() and (out / "report.md").exists()


def test_bad_input_gives_a_clear_error_and_exit_code_2(tmp_path, caplog):
    assert main(["evaluate", "--golden", str(tmp_path / "missing"), "--reward-model", str(tmp_path)]) == 2


def test_bad_override_is_rejected():
    from relsum.core.config import ConfigError

    args = build_parser().parse_args(["evaluate", "nonsense_key=1"])
    with pytest.raises(ConfigError, match="nonsense_key"):
        load_stage_config(args.stage, args)


def test_loader_progress_bars_stay_off_the_main_jobs_output(tmp_path, tiny_cross_encoder_dir, golden_subset):
    """transformers' per-model "Loading weights" bar is off in the main job; a user's own setting wins."""
    import os

    golden = golden_subset(3)
    # this process imported relsum.cli, which set the default: the child must start without it
    base = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"}

    def stderr(**env) -> str:
        run = subprocess.run([sys.executable, "-m", "relsum.cli", "evaluate", "--golden", str(golden),
                              "--reward-model", str(tiny_cross_encoder_dir), "--out", str(tmp_path / "e"),
                              "n_boot=20"], capture_output=True, text=True, env={**base, **env}, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        return run.stderr

    assert "Loading weights" not in stderr()
    assert "Loading weights" in stderr(HF_HUB_DISABLE_PROGRESS_BARS="0")
