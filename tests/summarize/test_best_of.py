"""Best-of-N at catalog time: the pick, the labels, the job (greedy fallback, manifest, keys), a kill."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from relsum.cli import main
from relsum.core.config import load_config
from relsum.core.paths import SAMPLE_DIR
from relsum.policy.reward import product_relevance_rewards, relevance_scores
from relsum.scoring.config import ScorerConfig
from relsum.scoring.scorer import Scorer
from relsum.summarize.best_of import BEST_OF_COLUMNS, BestOf, candidate_rewards, pick_best, prepare
from relsum.summarize.config import SummarizeConfig
from relsum.summarize.job import read_job_output, run_summarize
from relsum.summarize.output import FAULT_ENV

from . import build_random_policy

N = 8
LOGGED = 4  # the first LOGGED products have queries in the log


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    df = pd.read_json(SAMPLE_DIR / "products.jsonl", lines=True, dtype={"product_id": str}).head(N)
    path = tmp_path_factory.mktemp("bo_cat") / "catalog.jsonl"
    df[["product_id", "title", "description", "attributes"]].to_json(path, orient="records", lines=True)
    return path


@pytest.fixture(scope="module")
def products(catalog) -> pd.DataFrame:
    return pd.read_json(catalog, lines=True, dtype={"product_id": str})


@pytest.fixture(scope="module")
def policy(tmp_path_factory, products) -> Path:
    corpus = [str(x) for x in products["title"]] + [str(x) for x in products["description"]]
    return build_random_policy(tmp_path_factory.mktemp("bo_policy"), corpus)


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory) -> Path:
    """A tiny random cross-encoder with spread-out scores (so candidates' rewards differ)."""
    from relsum.scoring.tiny import build_tiny_cross_encoder

    return build_tiny_cross_encoder(tmp_path_factory.mktemp("bo_ce"), seed=1, initializer_range=0.3)


@pytest.fixture(scope="module")
def scorer(reward_model) -> Scorer:
    return Scorer(reward_model, ScorerConfig(store=False, path="fp32"))


def _log(products: pd.DataFrame, folder: Path, extra_query: bool = False) -> Path:
    """Two queries per logged product, one with a human label; a row for an unknown product (rejected)."""
    rows = []
    for i, pid in enumerate(products["product_id"].head(LOGGED)):
        rows.append({"query_id": f"q{i}a", "query": f"cheap {products['title'][i].split()[0]}",
                     "product_id": pid, "label": 1.0 if i % 2 else 0.25, "traffic": 3,
                     "event_date": "2026-10-01"})
        rows.append({"query_id": f"q{i}b", "query": f"best gift {i}", "product_id": pid, "label": None,
                     "traffic": 1, "event_date": "2026-10-02"})
    if extra_query:  # a new logged query for product 0 only
        rows.append({"query_id": "qnew", "query": "waterproof", "product_id": products["product_id"][0],
                     "label": None, "traffic": 1, "event_date": "2026-10-03"})
    rows.append({"query_id": "qx", "query": "ghost", "product_id": "not-in-catalog", "label": 1.0,
                 "traffic": 1, "event_date": "2026-10-01"})
    path = folder / f"log-{int(extra_query)}.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _config(catalog, policy, out, **kw) -> SummarizeConfig:
    kw.setdefault("dtype", "fp32")
    return SummarizeConfig(catalog=str(catalog), model_dir=str(policy), out_dir=str(out), shard_size=3,
                           max_new_tokens=6, show_progress=False, threads=1, batch_size=1, **kw)


def test_pick_is_the_highest_product_level_reward(scorer):
    """Labels set to candidate k's own scores give k reward 0, every other candidate < 0: k is picked."""
    titles = ["Acme cable", "Zeta mouse"]
    queries = [["usb cable", "long cable"], ["wireless mouse"]]
    candidates = [["", "braided nylon two metre", "red plastic"], ["", "optical sensor", "silent click"]]
    want = [2, 1]
    labels = [relevance_scores(scorer, q, [t] * len(q), [c[k]] * len(q)).tolist()
              for q, t, c, k in zip(queries, titles, candidates, want, strict=True)]
    rewards = candidate_rewards(scorer, queries, titles, candidates, labels)
    assert rewards.shape == (2, 3)
    assert pick_best(rewards).tolist() == want
    for row, k in zip(rewards, want, strict=True):
        assert row[k] == pytest.approx(0.0, abs=1e-6)
        assert (np.delete(row, k) < 0).all(), row
    # ties go to the greedy summary (candidate 0): the same string twice scores the same
    tied = candidate_rewards(scorer, queries[:1], titles[:1], [["same text", "same text"]], labels[:1])
    assert pick_best(tied).tolist() == [0]


def test_labels_are_human_where_logged_else_proxy(scorer):
    queries = {"p1": pd.DataFrame({"query_id": ["a", "b"], "query": ["usb cable", "gift"],
                                   "label": [0.75, np.nan]})}
    best = BestOf(SummarizeConfig(), queries, scorer, {})
    qs, labels = best.labels(["p1"], ["Acme cable"], ["braided | length: 2 m"])
    proxy = relevance_scores(scorer, ["gift"], ["Acme cable"], ["braided | length: 2 m"])[0]
    assert qs == [["usb cable", "gift"]]
    assert labels[0][0] == pytest.approx(0.75)
    assert labels[0][1] == pytest.approx(proxy, abs=1e-6)


def _shards(out: Path) -> pd.DataFrame:
    manifest = json.loads((out / "manifest.json").read_text())
    index = pd.read_parquet(out / manifest["index"])
    frames = [pd.read_parquet(out / s).merge(rows[["product_id", "run_id"]])
              for s, rows in index.groupby("shard")]
    return pd.concat(frames, ignore_index=True).sort_values("product_id", ignore_index=True)


def test_job_keeps_the_best_candidate_and_greedy_elsewhere(tmp_path, catalog, products, policy, reward_model,
                                                          scorer, monkeypatch):
    log = _log(products, tmp_path)
    run_summarize(_config(catalog, policy, tmp_path / "greedy"))
    greedy = read_job_output(tmp_path / "greedy").set_index("product_id")["summary"]
    out = tmp_path / "best"
    conf = _config(catalog, policy, out, best_of=3, search_log=str(log), reward_model=str(reward_model),
                   scorer=ScorerConfig(store=False, path="fp32"))
    manifest = run_summarize(conf)
    rows = _shards(out).set_index("product_id")
    served = read_job_output(out).set_index("product_id")["summary"]
    logged = list(products["product_id"].head(LOGGED))
    unlogged = [p for p in products["product_id"] if p not in logged]
    assert (rows.loc[unlogged, "best_of_picked"] == -1).all()
    assert served[unlogged].tolist() == greedy[unlogged].tolist()  # no log: the greedy summary
    assert (rows.loc[logged, "best_of_n_queries"] == 2).all()
    assert (rows.loc[logged, "reward_selected"] >= rows.loc[logged, "reward_greedy"]).all()
    # the stored rewards are the product-level reward of greedy and of the served summary
    best = prepare(conf, _valid(conf))
    titles = products.set_index("product_id").loc[logged, "title"].tolist()
    texts = _valid(conf).set_index("product_id").loc[logged, "text"].tolist()
    qs, labels = best.labels(logged, titles, texts)
    for col, summaries in (("reward_greedy", greedy[logged]), ("reward_selected", served[logged])):
        want = product_relevance_rewards(scorer, qs, titles, summaries.tolist(), labels)
        np.testing.assert_allclose(rows.loc[logged, col].to_numpy(), want, atol=1e-6)
    picked_sample = rows.loc[logged, "best_of_picked"] > 0
    assert (served[logged][~picked_sample] == greedy[logged][~picked_sample]).all()
    section = manifest["best_of"]
    assert section["products_scored"] == LOGGED and section["n"] == 3
    assert section["products_sample_picked"] == int(picked_sample.sum())
    assert section["mean_reward_selected"] >= section["mean_reward_greedy"]
    assert section["search_log"]["rows_rejected"] == 1  # the unknown product's row, counted, not dropped
    # a new logged query for product 0 re-selects product 0 only; the rest is carried over
    monkeypatch.chdir(tmp_path)
    conf2 = _config(catalog, policy, out, best_of=3, search_log=_log(products, tmp_path, True).name,
                    reward_model=str(reward_model), scorer=ScorerConfig(store=False, path="fp32"))
    again = run_summarize(conf2)
    assert again["counts"]["planned"] == 1 and again["counts"]["carried_over"] == N - 1
    assert _shards(out).set_index("product_id").loc[logged[0], "best_of_n_queries"] == 3
    saved = yaml.safe_load((out / "summarize.yaml").read_text())  # the repair config works from anywhere
    assert saved["search_log"] == str(tmp_path / "log-1.csv") and saved["best_of"] == 3


def _valid(conf: SummarizeConfig) -> pd.DataFrame:
    from relsum.data.contracts import validate_catalog
    from relsum.data.io import read_table

    return validate_catalog(read_table(conf.catalog), conf.contract).valid


@pytest.mark.slow
def test_killed_best_of_job_resumes_with_the_same_selections(tmp_path, catalog, products, policy,
                                                              reward_model):
    log = _log(products, tmp_path)
    settings = {"catalog": str(catalog), "model_dir": str(policy), "shard_size": 3, "max_new_tokens": 6,
                "batch_size": 1, "threads": 1, "dtype": "fp32", "show_progress": False, "best_of": 3,
                "search_log": str(log), "reward_model": str(reward_model), "scorer": {"path": "fp32"}}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = tmp_path / "killed"
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({**settings, "out_dir": str(out)}))
    cmd = [sys.executable, "-m", "relsum.cli", "summarize", "--config", str(path)]
    # the 5th shard fault point: inside shard 1, after shard 0 was recorded
    first = subprocess.run(cmd, env={**env, FAULT_ENV: "shard:5"}, capture_output=True, text=True,
                           timeout=300)
    assert first.returncode == -9, first.stderr[-2000:]
    assert not (out / "manifest.json").exists()
    assert list(out.glob("runs/*/shard-00000.done.json"))
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    run_summarize(load_config(SummarizeConfig, path, values={"out_dir": str(tmp_path / "whole")}))  # no kill
    whole, killed = _shards(tmp_path / "whole"), _shards(out)
    assert killed["product_id"].is_unique and len(killed) == N
    cols = ["product_id", "summary", *BEST_OF_COLUMNS]
    pd.testing.assert_frame_equal(killed[cols], whole[cols])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["timings"]["resumed_shards"] == 1
    assert manifest["best_of"]["products_scored"] == LOGGED  # resumed shards counted too


def test_cli_lists_the_best_of_flags_and_refuses_best_of_without_a_reward_model(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["summarize", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--best-of", "--search-log", "--reward-model"):
        assert flag in text
    code = main(["summarize", "--catalog", "c.jsonl", "--model", str(tmp_path), "--best-of", "3",
                 "--search-log", "log.csv"])
    assert code == 2
    assert "reward_model" in capsys.readouterr().err


def test_only_kept_samples_reach_the_jobs_raw_log():
    """Unkept samples stay out of the defect counts; a kept one brings its raw completion (chain followed)."""
    from relsum.policy.served import raw_log
    from relsum.summarize.best_of import merge_raw

    own = {"fast cable": ["fast cable long"], "fast cable long": ["Summary: fast cable long\nmore"],
           "other": ["other raw"]}
    with raw_log() as outer:
        merge_raw(["fast cable"], own)
    assert outer == {"fast cable": ["fast cable long"], "fast cable long": ["Summary: fast cable long\nmore"]}


def test_missing_search_log_or_reward_model_is_one_line(tmp_path, catalog, products, policy, reward_model,
                                                        capsys):
    log = _log(products, tmp_path)
    base = ["summarize", "--catalog", str(catalog), "--model", str(policy), "--out", str(tmp_path / "o"),
            "--best-of", "2"]
    assert main([*base, "--search-log", str(tmp_path / "nope.csv"), "--reward-model", str(reward_model)]) == 2
    assert "nope.csv" in capsys.readouterr().err
    assert main([*base, "--search-log", str(log), "--reward-model", str(tmp_path / "no_ce")]) == 2
    assert "reward model folder" in capsys.readouterr().err
    assert not (tmp_path / "o" / "manifest.json").exists()
