"""Fault tests of the summarize job: SIGKILL at seeded points, damaged shards, a folder made read-only.

``relsum summarize`` runs in child processes forked from one pre-imported Python (a "zygote" that has
imported torch and transformers but computed nothing, so forking is safe): the torch import is paid
once instead of per kill. ``RELSUM_FAULT_AT=<phase>:<n>`` makes the child SIGKILL itself at the n-th
fault point of a phase (``plan``, ``shard``, ``commit``); see ``relsum.summarize.output.fault_point``.
After every rerun each catalog row must be in the output exactly once or in the rejects with a reason.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from relsum.cli import main
from relsum.core.paths import SAMPLE_DIR
from relsum.summarize.job import read_job_output
from relsum.summarize.output import FAULT_ENV, DamagedOutputError, shard_paths

from . import build_random_policy

pytestmark = pytest.mark.slow

N_VALID = 12
SHARD = 3  # 4 shards: 3 fault points each
ZYGOTE = r"""
import json, os, sys, traceback
import importlib
from relsum.cli import main
for name in ("torch", "transformers", "peft", "pyarrow.parquet", "tqdm.auto",
             "transformers.generation.utils", "transformers.models.mistral.modeling_mistral",
             "relsum.pipelines.summarize", "relsum.summarize.job", "relsum.summarize.generation",
             "relsum.policy.load", "relsum.policy.generate"):
    importlib.import_module(name)  # the expensive imports, paid once (import only: no torch compute here)
print("ready", flush=True)
for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.environ.update(req["env"])
            code = main(req["argv"])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0,
                      "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None}), flush=True)
"""


class Zygote:
    def __init__(self) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false"}
        self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout.readline().strip() == "ready"

    def run(self, argv: list[str], log: Path, fault: str | None = None) -> dict:
        """Run ``relsum <argv>`` in a forked child; ``{"signal": n, "code": rc}`` when it ends."""
        env = {FAULT_ENV: fault} if fault else {}
        self.proc.stdin.write(json.dumps({"argv": argv, "log": str(log), "env": env}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def zygote():
    z = Zygote()
    yield z
    z.close()


@pytest.fixture(scope="module")
def base_catalog() -> pd.DataFrame:
    df = pd.read_json(SAMPLE_DIR / "products.jsonl", lines=True, dtype={"product_id": str}).head(N_VALID)
    df = df[["product_id", "title", "description", "attributes"]].astype(str)
    bad = [{"product_id": df["product_id"].iloc[0], "title": "Duplicate id", "description": "x",
            "attributes": ""},
           {"product_id": "no-title", "title": " ", "description": "x", "attributes": ""}]
    return pd.concat([df, pd.DataFrame(bad)], ignore_index=True)


@pytest.fixture(scope="module")
def policy(tmp_path_factory, base_catalog) -> Path:
    corpus = list(base_catalog["title"]) + list(base_catalog["description"])
    return build_random_policy(tmp_path_factory.mktemp("fault_policy"), corpus)


def _catalog(base: pd.DataFrame, folder: Path, version: int) -> Path:
    """The catalog with ``version`` written into two descriptions (a new digest, the same products)."""
    df = base.copy()
    for i in (version % N_VALID, (version + 5) % N_VALID):
        df.loc[i, "description"] = f"{df.loc[i, 'description']} (revision {version})"
    path = folder / f"catalog-{version}.jsonl"
    df.to_json(path, orient="records", lines=True)
    return path


def _config(folder: Path, policy: Path, out: Path, incremental: bool) -> Path:
    path = folder / f"job-{incremental}.yaml"
    path.write_text(yaml.safe_dump({"model_dir": str(policy), "out_dir": str(out), "shard_size": SHARD,
                                    "max_new_tokens": 4, "batch_size": 3, "show_progress": False,
                                    "threads": 1, "incremental": incremental}))
    return path


def assert_each_product_once_or_rejected(out: Path, catalog: Path | None = None) -> pd.DataFrame:
    """Committed output: every row of the committed run's catalog once in the output or rejected with a
    reason."""
    manifest = json.loads((out / "manifest.json").read_text())
    summaries = read_job_output(out)
    rejects = pd.read_csv(out / manifest["rejects"], dtype=str, keep_default_na=False)
    assert summaries["product_id"].is_unique
    assert (rejects["reason"].str.strip() != "").all(), rejects
    assert len(summaries) + len(rejects) == manifest["counts"]["rows_in"] == N_VALID + 2
    assert len(summaries) == manifest["counts"]["in_output"]
    rows = pd.read_json(catalog or manifest["config"]["catalog"], lines=True, dtype={"product_id": str})
    placed = sorted([*summaries["product_id"], *rejects["product_id"].replace("", pd.NA).dropna()])
    assert placed == sorted(rows["product_id"]), (placed, sorted(rows["product_id"]))
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    return summaries


def _log_tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"


def test_sigkill_at_seeded_points_then_rerun(tmp_path, zygote, base_catalog, policy):
    """At least 5 seeded kill points across plan, shard writes and commit; each rerun completes the run."""
    out = tmp_path / "out"
    job = _config(tmp_path, policy, out, incremental=False)  # every round plans all 4 shards
    plan = [f"plan:{n}" for n in (1, 2)]
    shard = [f"shard:{n}" for n in range(1, 3 * (N_VALID // SHARD) + 1)]
    commit = [f"commit:{n}" for n in range(1, 5)]
    rng = random.Random(15)
    points = [rng.choice(plan), *rng.sample(shard, 2), *rng.sample(commit, 2)]
    points.append(rng.choice([p for p in plan + shard + commit if p not in points]))
    committed_before = None
    for version, point in enumerate(points):
        catalog = _catalog(base_catalog, tmp_path, version)
        log = tmp_path / f"kill-{version}.log"
        result = zygote.run(["summarize", "--config", str(job), f"catalog={catalog}"], log, fault=point)
        assert result["signal"] == signal.SIGKILL, (point, result, _log_tail(log))
        if committed_before is not None:  # the kill lost no committed output
            after = assert_each_product_once_or_rejected(out)
            if not point.startswith("commit:") or point in ("commit:1", "commit:2"):
                pd.testing.assert_frame_equal(after, committed_before)
        assert main(["summarize", "--config", str(job), f"catalog={catalog}"]) == 0, point
        committed_before = assert_each_product_once_or_rejected(out, catalog)
        manifest = json.loads((out / "manifest.json").read_text())
        assert (committed_before["run_id"] == manifest["run_id"]).all()


def _damage(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_damaged_committed_and_uncommitted_shards_are_regenerated(tmp_path, zygote, base_catalog, policy,
                                                                   caplog):
    out = tmp_path / "out"
    job = _config(tmp_path, policy, out, incremental=True)
    first = _catalog(base_catalog, tmp_path, 0)
    assert main(["summarize", "--config", str(job), f"catalog={first}"]) == 0
    before = assert_each_product_once_or_rejected(out)
    manifest = json.loads((out / "manifest.json").read_text())

    # a committed shard truncated: read_job_output names it and the repair command; a rerun repairs it
    victim = manifest["shards"][1]
    _damage(out / victim)
    with pytest.raises(DamagedOutputError, match=rf"{victim}.*truncated.*relsum summarize --config"):
        read_job_output(out)
    caplog.set_level(logging.WARNING)
    assert main(["summarize", "--config", str(out / "summarize.yaml")]) == 0
    assert f"committed shard {victim}" in caplog.text and "regenerating" in caplog.text
    repaired = assert_each_product_once_or_rejected(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["repaired_shards"] == [victim] and manifest["counts"]["planned"] == SHARD
    kept = ["product_id", "summary", "summary_status", "content_key"]
    pd.testing.assert_frame_equal(repaired[kept], before[kept])

    # a committed shard deleted: the same
    gone = manifest["shards"][0]
    (out / gone).unlink()
    with pytest.raises(DamagedOutputError, match="missing"):
        read_job_output(out)
    assert main(["summarize", "--config", str(job), f"catalog={first}"]) == 0
    assert_each_product_once_or_rejected(out, first)

    # an uncommitted shard of an interrupted run truncated: the resumed run regenerates only that one
    second = _catalog(base_catalog, tmp_path, 1)
    no_carry = _config(tmp_path, policy, out, incremental=False)
    log = tmp_path / "kill.log"
    result = zygote.run(["summarize", "--config", str(no_carry), f"catalog={second}"], log, fault="shard:7")
    assert result["signal"] == signal.SIGKILL, _log_tail(log)
    run_dir = max((out / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    shard0, _, _ = shard_paths(run_dir, 0)
    assert shard_paths(run_dir, 1)[2].is_file() and not shard_paths(run_dir, 2)[0].exists()
    _damage(shard0)
    caplog.clear()
    assert main(["summarize", "--config", str(no_carry), f"catalog={second}"]) == 0
    assert f"{run_dir.name} shard 0 is damaged" in caplog.text
    assert json.loads((out / "manifest.json").read_text())["timings"]["resumed_shards"] == 1
    assert_each_product_once_or_rejected(out, second)

    # the committed index, then the manifest itself: refused by name, rebuilt by a rerun
    index = json.loads((out / "manifest.json").read_text())["index"]
    _damage(out / index)
    with pytest.raises(DamagedOutputError, match=rf"{index}.*truncated"):
        read_job_output(out)
    assert main(["summarize", "--config", str(no_carry), f"catalog={second}"]) == 0
    assert_each_product_once_or_rejected(out, second)
    (out / "manifest.json").write_text('{"run_id": ')
    with pytest.raises(DamagedOutputError, match="manifest.json is damaged"):
        read_job_output(out)
    assert main(["summarize", "--config", str(no_carry), f"catalog={second}"]) == 0
    assert_each_product_once_or_rejected(out, second)


@contextlib.contextmanager
def read_only(folder: Path):
    """``folder`` unwritable, also for root (``chattr +i``); skips where that cannot be done."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    try:
        made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
    except FileNotFoundError:
        made = False
    if not made:
        pytest.skip("running as root without chattr +i: cannot make a folder read-only")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_run_folder_made_read_only_mid_run(tmp_path, zygote, base_catalog, policy, capsys):
    out = tmp_path / "out"
    job = _config(tmp_path, policy, out, incremental=False)
    assert main(["summarize", "--config", str(job), f"catalog={_catalog(base_catalog, tmp_path, 0)}"]) == 0
    committed = read_job_output(out)
    catalog = _catalog(base_catalog, tmp_path, 1)
    result = zygote.run(["summarize", "--config", str(job), f"catalog={catalog}"], tmp_path / "k.log",
                        fault="shard:4")
    assert result["signal"] == signal.SIGKILL, _log_tail(tmp_path / "k.log")
    run_dir = max((out / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    capsys.readouterr()
    with read_only(run_dir):
        assert main(["summarize", "--config", str(job), f"catalog={catalog}"]) == 2
    line = _one_error_line(capsys)
    assert str(run_dir) in line and "rerun to resume" in line, line
    pd.testing.assert_frame_equal(read_job_output(out), committed)  # nothing committed was lost
    assert main(["summarize", "--config", str(job), f"catalog={catalog}"]) == 0
    assert_each_product_once_or_rejected(out, catalog)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("relsum summarize: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_read_only_output_folder_and_parent(tmp_path, base_catalog, policy, capsys):
    """Refused up front with one line naming the folder; nothing is written."""
    catalog = _catalog(base_catalog, tmp_path, 0)
    out = tmp_path / "out"
    out.mkdir()
    with read_only(out):
        assert main(["summarize", "--catalog", str(catalog), "--model", str(policy), "--out", str(out)]) == 2
    line = _one_error_line(capsys)
    assert "cannot create the lock file" in line and str(out) in line and not list(out.iterdir())
    parent = tmp_path / "parent"
    parent.mkdir()
    with read_only(parent):
        assert main(["summarize", "--catalog", str(catalog), "--model", str(policy),
                     "--out", str(parent / "out")]) == 2
    line = _one_error_line(capsys)
    assert "cannot create the summaries output folder" in line and str(parent / "out") in line
