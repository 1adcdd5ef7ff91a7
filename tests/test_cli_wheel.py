"""A plain (non-editable) wheel works from the repository root and from anywhere else.

``pipelines/``, ``evaluation/`` and ``sql/`` are installed as ``relsum.pipelines`` etc. Run from the
repository root, Python finds the source ``relsum/`` first (the current folder leads ``sys.path``),
so ``relsum.SourceLayoutFinder`` must serve the three folders there. The interpreter runs with ``-S``
so that the editable install's finder (a ``.pth`` hook) cannot hide a packaging mistake.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import relsum

REPO = Path(relsum.__file__).resolve().parent.parent
CHECK = """
import json, relsum, relsum.evaluation, relsum.metrics.ranking, relsum.pipelines, relsum.pipelines.validate
import relsum.sql
from relsum.cli import main
try:
    main(["--help"])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "relsum": relsum.__file__, "pipelines": relsum.pipelines.__file__}))
"""


def test_plain_wheel_runs_from_the_repo_root_and_elsewhere(tmp_path):
    pytest.importorskip("setuptools")
    if not (REPO / "pyproject.toml").is_file():
        pytest.skip("not a source checkout")
    src = tmp_path / "src"  # build from a copy: no build/ folder left in the working tree
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for folder in ("relsum", "pipelines", "evaluation", "sql"):
        shutil.copytree(REPO / folder, src / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "-w", str(tmp_path / "dist"), "--no-deps",
                    "--no-build-isolation", "-q"], check=True, capture_output=True, timeout=600)
    (wheel,) = (tmp_path / "dist").glob("relsum-*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    names = zipfile.ZipFile(wheel).namelist()
    assert {"relsum/pipelines/validate.py", "relsum/evaluation/bootstrap.py", "relsum/sql/extract_pairs.sql",
            "relsum/metrics/ranking.py", "relsum/cli_stages.py"} <= set(names)

    env = {"PYTHONPATH": f"{site}:{sysconfig.get_paths()['purelib']}", "HF_HUB_OFFLINE": "1",
           "PATH": "/usr/bin:/bin"}
    for cwd, origin in ((REPO, REPO), (tmp_path, site)):
        result = subprocess.run([sys.executable, "-S", "-c", CHECK], cwd=cwd, env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        seen = json.loads(result.stdout.strip().splitlines()[-1])
        assert seen["code"] == 0
        assert Path(seen["relsum"]).is_relative_to(origin) and Path(seen["pipelines"]).is_relative_to(origin)
