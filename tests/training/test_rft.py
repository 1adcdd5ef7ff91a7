"""Rejection-sampling fine-tuning (algo=rft): best of N by the product-level reward, TRL SFT of a LoRA whose
base stays bit-identical; and DPO's best-vs-worst pairing."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from relsum.core.config import ConfigError, load_config
from relsum.policy.load import load_policy
from relsum.training.config import RFTStageConfig, TrainConfig


def _config(tmp_path, policy_dir, *overrides):
    return load_config(TrainConfig, None, [
        "algo=rft", f"out_dir={tmp_path}", f"policy.model_dir={policy_dir}", "policy.lora_r=4",
        "policy.lora_alpha=8", "policy.max_prompt_tokens=128", "policy.max_summary_tokens=12",
        "rft.samples_per_product=4", "rft.per_device_train_batch_size=4", "rft.learning_rate=1e-3",
        *overrides])


def _base_hash(state: dict) -> str:
    """sha256 over the base weights (LoRA tensors left out, PEFT's name prefixes removed), sorted by name."""
    digest = hashlib.sha256()
    for key in sorted(k for k in state if "lora_" not in k):
        name = key.replace("base_model.model.", "", 1).replace(".base_layer", "")
        digest.update(name.encode())
        digest.update(state[key].detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("bad", ["rft.samples_per_product=1", "rft.rounds=0", "rft.temperature=0",
                                 "rft.min_gain=-1", "rft.max_steps=0", "rft.extra={no_such_arg: 1}",
                                 "dpo.pairing=random", "dpo.samples_per_product=1",
                                 "rft.products_per_round=-1", "dpo.max_products=-1"])
def test_bad_rft_and_pairing_settings_are_refused(bad):
    with pytest.raises((ValueError, ConfigError)):
        load_config(TrainConfig, None, [bad])


def test_sft_config_trains_on_the_completion_only(tmp_path):
    args = RFTStageConfig(learning_rate=3e-4, extra={"max_grad_norm": 0.5}).to_sft_config(
        str(tmp_path), max_length=200, seed=3)
    assert args.completion_only_loss is True and args.packing is False and args.max_length == 200
    assert args.learning_rate == 3e-4 and args.max_grad_norm == 0.5 and args.seed == 3


def test_select_best_keeps_the_best_sample_and_counts_the_rest():
    from relsum.training.rft import select_best

    products = pd.DataFrame({"product_id": ["a", "b", "c"], "title": ["A", "B", "C"],
                             "queries": [["q1", "q2"], ["q1"], ["q3"]]})
    samples = [["x", "best a", "y"], ["", "", ""], ["same", "same", "same"]]
    rewards = np.array([[-0.5, -0.1, -0.3], [-0.2, -0.2, -0.2], [-0.4, -0.4, -0.4]])
    kept, stats = select_best(products, samples, rewards, ["P a:", "P b:", "P c:"], min_gain=0.01,
                              round_index=0)
    assert kept["product_id"].tolist() == ["a"] and kept["completion"].tolist() == [" best a"]
    assert kept["reward_best"].iat[0] == pytest.approx(-0.1) and kept["queries"].iat[0] == 2
    assert stats["empty_best"] == 1 and stats["below_min_gain"] == 1 and stats["kept"] == 1
    kept0, _ = select_best(products, samples, rewards, ["P a:", "P b:", "P c:"], 0.0, 0)
    assert kept0["product_id"].tolist() == ["a", "c"]  # min_gain 0 keeps ties, never an empty best


def test_best_of_n_reward_is_the_product_level_mean(tiny_policy_dir, train_df, scorer, tmp_path):
    from relsum.policy.reward import relevance_rewards
    from relsum.training.options import product_rows
    from relsum.training.rft import product_sample_rewards, sample_products_n

    cfg = _config(tmp_path, tiny_policy_dir)
    model, tok = load_policy(tiny_policy_dir)
    products = product_rows(train_df.head(8), 0, 0).head(3)
    samples = sample_products_n(model, tok, products, cfg, 3, 0.9, 2, seed=0)
    assert [len(s) for s in samples] == [3, 3, 3]
    rewards = product_sample_rewards(scorer, products, samples)
    i, j = 1, 2
    queries, labels = products["queries"].iat[i], products["labels"].iat[i]
    by_pair = relevance_rewards(scorer, queries, [products["title"].iat[i]] * len(queries),
                                [samples[i][j]] * len(queries), labels)
    assert rewards.shape == (3, 3) and rewards[i, j] == pytest.approx(by_pair.mean())


def test_rft_trains_a_lora_and_leaves_the_base_bit_identical(tmp_path, tiny_policy_dir, train_df, scorer):
    from relsum.training.rft import train_rft

    before = _base_hash(load_policy(tiny_policy_dir)[0].state_dict())
    files_before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                    for p in tiny_policy_dir.glob("*.safetensors")}
    result = train_rft(_config(tmp_path, tiny_policy_dir, "rft.rounds=2"), train_df, scorer)
    state = result["model"].state_dict()
    lora_b = [v for k, v in state.items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # B starts at zero: non-zero = trained
    assert _base_hash(state) == before
    assert files_before and files_before == {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                                             for p in tiny_policy_dir.glob("*.safetensors")}
    assert [s["round"] for s in result["round_stats"]] == [0, 1] and result["steps"] >= 2
    products = train_df["product_id"].nunique()
    assert all(s["products"] == products for s in result["round_stats"])  # every training product sampled
    samples = result["samples"]
    assert (samples["reward_best"] >= samples["reward_mean"]).all()
    assert any("loss" in row for row in result["log_history"])
    from relsum.policy.generate import generate_summaries

    model, tok = load_policy(tiny_policy_dir, result["adapter_dir"], merge=True)
    assert len(generate_summaries(model, tok, train_df["title"][:2].tolist(), train_df["text"][:2].tolist(),
                                  max_new_tokens=8)) == 2


def test_dpo_best_worst_pairs_one_per_product(tmp_path, tiny_policy_dir, train_df, scorer):
    from relsum.training.dpo import build_preference_pairs

    model, tok = load_policy(tiny_policy_dir)
    cfg = load_config(TrainConfig, None, [
        "algo=dpo", f"out_dir={tmp_path}", "dpo.pairing=best_worst", "dpo.samples_per_product=4",
        "dpo.min_reward_margin=0", "policy.max_summary_tokens=8"])
    pairs, stats = build_preference_pairs(model, tok, train_df, scorer, cfg)
    products = train_df["product_id"].nunique()
    assert len(pairs) + stats["near_ties_dropped"] + stats["skipped_empty_text"] == products
    assert pairs["product_id"].is_unique and (pairs["reward_chosen"] > pairs["reward_rejected"]).all()
    assert (pairs["queries"] >= 1).all() and stats["pairing"] == "best_worst"


def test_product_subset_is_a_seeded_sorted_draw_or_everything():
    from relsum.training.options import product_subset

    assert product_subset(5, 0, 1).tolist() == [0, 1, 2, 3, 4] == product_subset(5, 9, 1).tolist()
    a, b = product_subset(50, 10, 1), product_subset(50, 10, 2)
    assert len(a) == len(set(a)) == 10 and a.tolist() == sorted(a) and a.max() < 50
    assert a.tolist() == product_subset(50, 10, 1).tolist() and a.tolist() != b.tolist()


def test_rft_rounds_draw_new_product_subsets(tmp_path, tiny_policy_dir, train_df, scorer):
    from relsum.training.rft import train_rft

    result = train_rft(_config(tmp_path, tiny_policy_dir, "rft.rounds=2", "rft.products_per_round=3",
                               "rft.samples_per_product=2"), train_df, scorer)
    stats, samples = result["round_stats"], result["samples"]
    total = train_df["product_id"].nunique()
    assert [s["products"] for s in stats] == [3, 3] and all(s["products_total"] == total for s in stats)
    drawn = [set(samples.loc[samples["round"] == k, "product_id"]) for k in (0, 1)]
    assert all(len(d) <= 3 for d in drawn) and drawn[0] != drawn[1]  # a new draw each round


def test_dpo_best_worst_pairs_only_the_drawn_products(tmp_path, tiny_policy_dir, train_df, scorer):
    from relsum.training.dpo import build_preference_pairs

    model, tok = load_policy(tiny_policy_dir)
    cfg = load_config(TrainConfig, None, [
        "algo=dpo", f"out_dir={tmp_path}", "dpo.pairing=best_worst", "dpo.samples_per_product=2",
        "dpo.min_reward_margin=0", "dpo.max_products=2", "policy.max_summary_tokens=4"])
    pairs, stats = build_preference_pairs(model, tok, train_df, scorer, cfg)
    with_text = train_df.drop_duplicates("product_id")["text"].str.strip().ne("").sum()
    assert stats["not_drawn"] == with_text - 2 and len(pairs) + stats["near_ties_dropped"] == 2


@pytest.mark.slow  # one RFT round and a held-out comparison on the tiny policy, tracked in MLflow
def test_train_stage_runs_rft_and_stores_its_samples(tmp_path, tiny_policy_dir, tiny_cross_encoder_dir,
                                                      train_df, scorer):
    import json
    from pathlib import Path

    from relsum.pipelines.configs import TrainStageConfig
    from relsum.pipelines.train import run

    data = tmp_path / "pairs.parquet"
    train_df.to_parquet(data, index=False)
    config = load_config(TrainStageConfig, None, [
        "trainer.algo=rft", f"trainer.train_data={data}",
        f"trainer.scorer_model_dir={tiny_cross_encoder_dir}",
        f"trainer.policy.model_dir={tiny_policy_dir}", f"trainer.out_dir={tmp_path / 'train'}",
        "trainer.policy.lora_r=4", "trainer.policy.lora_alpha=8", "trainer.policy.max_summary_tokens=8",
        "trainer.rft.samples_per_product=2", "trainer.rft.max_steps=1", "holdout_fraction=0.3",
        "heldout_samples=0", "max_heldout_products=2", "n_boot=20",
        f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"tracking.artifact_location={(tmp_path / 'artifacts').as_uri()}"])
    result = run(config, scorer=scorer)
    assert result.algo == "rft" and result.steps == 1 and result.mlflow_run_id
    samples = pd.read_parquet(result.paths.rft_samples)
    assert len(samples) == result.trainer_stats["round_stats"][0]["kept"] > 0
    assert result.paths.dpo_pairs is None and result.heldout
    saved = json.loads(Path(result.paths.result).read_text())
    assert saved["trainer_stats"]["round_stats"][0]["products"] == result.trainer_stats["products"]

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    logged = mlflow.get_run(result.mlflow_run_id).data
    assert logged.params["relsum.algo"] == "rft" and "rft_best_reward_mean" in logged.metrics


def test_products_without_a_description_are_an_input_error(tmp_path, train_df, scorer):
    from relsum.core.errors import InputError
    from relsum.training.rft import train_rft

    with pytest.raises(InputError, match="none of the 16 training products has a description"):
        train_rft(_config(tmp_path, "unused-policy-dir"), train_df.assign(text=" "), scorer)
