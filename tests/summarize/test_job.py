"""The batch job end to end with a tiny random policy: kill/resume, incremental, rejects, partitions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from relsum.core.paths import SAMPLE_DIR
from relsum.summarize.backends import summarize_safely
from relsum.summarize.config import SummarizeConfig
from relsum.summarize.job import read_job_output, run_summarize

from . import build_random_policy

N = 40


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    df = pd.read_json(SAMPLE_DIR / "products.jsonl", lines=True).head(N)
    df = df[["product_id", "title", "description", "attributes"]]
    path = tmp_path_factory.mktemp("cat") / "catalog.jsonl"
    df.to_json(path, orient="records", lines=True)
    return path


@pytest.fixture(scope="module")
def policy(tmp_path_factory, catalog) -> Path:
    df = pd.read_json(catalog, lines=True)
    corpus = [str(x) for x in df["title"]] + [str(x) for x in df["description"]]
    return build_random_policy(tmp_path_factory.mktemp("policy"), corpus)


def _config(catalog, policy, out, **kw) -> SummarizeConfig:
    """batch_size=1: a product's greedy summary does not depend on its batch (padded shapes round differently
    on different CPUs' kernels), so incremental and full reruns must agree exactly on any CPU."""
    kw.setdefault("dtype", "fp32")  # auto would pick bf16 on native-bf16 CPUs only
    return SummarizeConfig(catalog=str(catalog), model_dir=str(policy), out_dir=str(out), shard_size=8,
                           max_new_tokens=6, show_progress=False, threads=1, batch_size=1, **kw)


def _no_temps(out: Path) -> None:
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_killed_job_resumes_and_ends_with_each_product_once(tmp_path, catalog, policy):
    out = tmp_path / "out"
    cfg_path = tmp_path / "job.yaml"
    cfg_path.write_text(yaml.safe_dump({"catalog": str(catalog), "model_dir": str(policy),
                                        "out_dir": str(out),
                                        "shard_size": 2, "max_new_tokens": 8, "batch_size": 2,
                                        "show_progress": False, "threads": 1}))
    cmd = [sys.executable, "-m", "relsum.cli", "summarize", "--config", str(cfg_path)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    log = open(tmp_path / "first.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while (time.time() < deadline and not list(out.glob("runs/*/shard-*[0-9].parquet"))
           and proc.poll() is None):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    shards_before = {p.name for p in out.glob("runs/*/shard-0*[0-9].parquet")}
    assert shards_before, (tmp_path / "first.log").read_text()[-3000:]
    assert not (out / "manifest.json").exists(), "job finished before it could be killed"
    run_dir = next(out.glob("runs/*"))
    (run_dir / ".shard-09999.parquet.abc123.tmp").write_bytes(b"partial")  # as a kill mid-write leaves it
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["timings"]["resumed_shards"] >= len(shards_before)
    assert manifest["counts"]["in_output"] == N, (out / "rejects.csv").read_text()[-2000:]
    summaries = read_job_output(out)
    assert len(summaries) == N and summaries["product_id"].is_unique
    index = pd.read_parquet(out / "index.parquet")
    assert sorted(index["product_id"]) == sorted(summaries["product_id"])
    _no_temps(out)


def test_incremental_rerun_regenerates_only_changed_products(tmp_path, catalog, policy):
    out = tmp_path / "out"
    first = run_summarize(_config(catalog, policy, out))
    assert first["counts"]["planned"] == N and first["counts"]["carried_over"] == 0
    again = run_summarize(_config(catalog, policy, out))
    assert again["run_id"] == first["run_id"]  # unchanged catalog: idempotent no-op
    df = pd.read_json(catalog, lines=True)
    changed = list(df["product_id"].iloc[[3, 7]])
    df.loc[[3, 7], "description"] = ["A brand new description", "Another rewritten description"]
    cat2 = tmp_path / "catalog2.jsonl"
    df.to_json(cat2, orient="records", lines=True)
    second = run_summarize(_config(cat2, policy, out))
    c = second["counts"]
    assert (c["planned"], c["carried_over"], c["in_output"]) == (2, N - 2, N)
    summaries = read_job_output(out)
    assert len(summaries) == N and summaries["product_id"].is_unique
    fresh = summaries[summaries["run_id"] == second["run_id"]]
    assert sorted(fresh["product_id"]) == sorted(changed)
    assert (summaries[summaries["run_id"] != second["run_id"]]["run_id"] == first["run_id"]).all()
    full = run_summarize(_config(cat2, policy, tmp_path / "full", incremental=False))
    merged = summaries.merge(read_job_output(tmp_path / "full"), on="product_id")
    assert full["counts"]["planned"] == N
    assert (merged["summary_x"] == merged["summary_y"]).all()  # greedy: incremental == full rerun
    _no_temps(out)


def test_bad_rows_are_rejected_with_reasons_and_counts_add_up(tmp_path, policy):
    rows = [
        {"product_id": "a1", "title": "Cordless drill", "description": "18 V, two batteries",
         "attributes": ""},
        {"product_id": "", "title": "No id", "description": "x", "attributes": ""},
        {"product_id": "a1", "title": "Duplicate", "description": "x", "attributes": ""},
        {"product_id": "a3", "title": "  ", "description": "x", "attributes": ""},
        {"product_id": "a4", "title": "Plain mug", "description": "", "attributes": ""},
        {"product_id": "a5", "title": " ".join(["Very long title word"] * 15), "description": "x",
         "attributes": ""},
    ]
    path = tmp_path / "bad.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    from relsum.policy.load import load_tokenizer
    from relsum.policy.prompt import build_prompt

    frame = len(load_tokenizer(policy)(build_prompt("Cordless drill", ""))["input_ids"])
    manifest = run_summarize(_config(path, policy, tmp_path / "out", max_input_tokens=frame + 10))
    c = manifest["counts"]
    assert c["rows_in"] == 6 and c["rows_in"] == c["in_output"] + c["rejected"]
    rejects = pd.read_csv(tmp_path / "out" / "rejects.csv", dtype=str, keep_default_na=False)
    reasons = dict(zip(rejects["title"].str.strip(), rejects["reason"], strict=True))
    assert reasons["No id"].startswith("missing key") and reasons["Duplicate"].startswith("duplicate key")
    assert reasons[""].startswith("empty title")
    assert reasons[rows[5]["title"]].startswith("over-length input")
    out = read_job_output(tmp_path / "out").set_index("product_id")
    assert sorted(out.index) == ["a1", "a4"]
    assert out.loc["a4", "summary"] == "" and out.loc["a4", "summary_status"] == "empty_input"
    assert out.loc["a1", "summary_status"] == "ok"


def test_generation_errors_are_retried_one_by_one():
    def fn(titles, texts):
        if any("POISON" in t for t in texts):
            raise ValueError("bad input")
        return [t.upper() for t in texts]

    summaries, errors = summarize_safely(fn, ["a", "b", "c"], ["x", "POISON", "z"])
    assert summaries == ["X", "", "Z"]
    assert errors[0] is None and errors[2] is None and "bad input" in errors[1]


def test_partitions_are_idempotent_and_carry_over(tmp_path, catalog, policy):
    from relsum.pipelines.summarize import run

    cfg = _config(catalog, policy, tmp_path / "out")
    day1 = run(cfg, partition="2024-05-01")
    assert run(cfg, partition="2024-05-01")["run_id"] == day1["run_id"]
    day2 = run(cfg, partition="2024-05-02")
    assert day2["counts"]["planned"] == 0 and day2["counts"]["carried_over"] == N
    s1 = read_job_output(tmp_path / "out" / "partition=2024-05-01")
    s2 = read_job_output(tmp_path / "out" / "partition=2024-05-02")
    pd.testing.assert_frame_equal(s1, s2)



def test_prompt_variant_is_a_generation_setting(tmp_path, catalog, policy):
    """The catalog serves with the prompt the adapter was trained with: the variant reaches the plan and the
    generated text, and changing it regenerates every product (it is part of the content key)."""
    out = tmp_path / "out"
    paper = run_summarize(_config(catalog, policy, out, prompt="paper"))
    plan = json.loads((out / "runs" / paper["run_id"] / "plan.json").read_text())
    assert plan["prompt"] == "paper" and plan["dtype"] == "fp32"
    first = read_job_output(out)
    one_line = run_summarize(_config(catalog, policy, out, prompt="one_line"))
    assert one_line["run_id"] != paper["run_id"]
    second = read_job_output(out)
    assert set(first["content_key"]).isdisjoint(second["content_key"])
    assert json.loads((out / "runs" / one_line["run_id"] / "plan.json").read_text())["prompt"] == "one_line"
    with pytest.raises(ValueError, match="unknown prompt variant"):
        run_summarize(_config(catalog, policy, tmp_path / "bad", prompt="nonsense"))
