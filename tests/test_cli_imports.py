"""``relsum <stage> --help``, argument errors and config errors load no heavy library (issue #13 item 9).

Each check runs in a fresh interpreter, since the test process itself has long imported pandas and torch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from relsum.cli_stages import STAGES

#: What a stage's help or a bad argument must not load: each costs 0.1-2 s to import.
HEAVY = ("pandas", "numpy", "pyarrow", "duckdb", "torch", "transformers", "trl", "peft", "datasets",
         "sentence_transformers", "mlflow", "ray", "scipy", "sklearn", "matplotlib", "onnxruntime")

#: Runs ``relsum`` commands in one process and reports, per command, the heavy modules loaded so far
#: (they accumulate, so the first command that names one is the one that loaded it) and its exit status.
PROBE = """
import contextlib, io, json, sys
from relsum.cli import main

heavy, commands, report = json.loads(sys.argv[1]), json.loads(sys.argv[2]), []
for argv in commands:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            status = main(argv)
        except SystemExit as exc:
            status = exc.code
    report.append([argv, status, sorted(m for m in heavy if m in sys.modules)])
print(json.dumps(report))
"""


def probe(commands: list[list[str]]) -> list[tuple[list[str], int, list[str]]]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(HEAVY), json.dumps(commands)],
                         capture_output=True, text=True, env=env, timeout=120, check=True)
    return [tuple(row) for row in json.loads(out.stdout)]


def test_stage_help_loads_no_heavy_library():
    """Every stage's --help builds its default config (the key listing) without pandas, numpy or torch."""
    report = probe([[*stage.command.split(), "--help"] for stage in STAGES])
    assert len(report) == len(STAGES)
    for argv, status, loaded in report:
        assert status == 0, argv
        assert loaded == [], f"relsum {' '.join(argv)} imported {loaded}"


def test_argument_and_config_errors_load_no_heavy_library():
    report = probe([["--help"], ["train", "--bogus-flag"], ["validate", "--catalog"],
                    ["validate"],  # no table given: a config error from ValidateConfig's checks
                    ["evaluate", "min_precision=2"], ["pairs", "filter.threshold=2"]])
    for argv, status, loaded in report:
        assert status in (0, 2), (argv, status)
        assert loaded == [], f"relsum {' '.join(argv)} imported {loaded}"
