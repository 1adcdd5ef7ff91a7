"""GRPO options: float-safe group filter, product-level reward, entropy quantile wiring, all options in a
real run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from relsum.core.config import load_config
from relsum.training.config import OptionsConfig, TrainConfig
from relsum.training.options import SummaryReward, filter_groups, product_rows


def trl_group_advantages(rewards, g: int) -> torch.Tensor:
    """TRL 1.16 GRPOTrainer advantages, scale_rewards='group' (grpo_trainer.py: (r - mean) / (std + 1e-4))."""
    r = torch.tensor(rewards, dtype=torch.float32)  # TRL builds a float32 tensor from the reward list
    mean = r.view(-1, g).mean(dim=1).repeat_interleave(g)
    std = r.view(-1, g).std(dim=1).repeat_interleave(g)
    return (r - mean) / (std + 1e-4)


def test_filter_drops_near_equal_group_and_keeps_normal_one():
    near = [0.3, 0.3 + 1e-9, 0.3, 0.3 - 1e-9]
    normal = [0.1, 0.5, 0.2, 0.9]
    out, dropped = filter_groups(near + normal, 4, 1e-3)
    assert dropped.tolist() == [True, False]
    assert len(set(out[:4].tolist())) == 1 and out[:4][0] == pytest.approx(0.3, abs=2 ** -10)
    assert out[4:].tolist() == normal
    adv = trl_group_advantages(out.tolist(), 4)
    assert torch.equal(adv[:4], torch.zeros(4)) and adv[4:].abs().min() > 0.1


def test_filter_removes_amplified_float_noise():
    # std ~2e-4 is scorer noise, but TRL's /(std + 1e-4) turns it into advantages of about +-0.7
    noisy = [-0.4213, -0.4211, -0.4215, -0.4212]
    assert trl_group_advantages(noisy, 4).abs().max() > 0.5
    out, dropped = filter_groups(noisy, 4, 1e-3)
    assert dropped.all() and torch.equal(trl_group_advantages(out.tolist(), 4), torch.zeros(4))


def test_filter_rejects_partial_groups():
    with pytest.raises(ValueError, match="groups"):
        filter_groups([0.1, 0.2, 0.3], 2, 1e-3)


def test_product_reward_averages_over_the_products_queries(scorer):
    opt = OptionsConfig(product_reward=True)
    df = pd.DataFrame({"query": ["usb cable", "black headphones", "laptop bag", "usb cable"],
                       "product_id": ["a", "a", "b", "b"], "title": ["Cable X", "Cable X", "Bag Y", "Bag Y"],
                       "text": ["usb c cable 1 m", "usb c cable 1 m", "laptop bag 15 inch",
                                "laptop bag 15 inch"],
                       "label": [1.0, 0.0, 0.75, 0.25]})
    rows = product_rows(df)
    assert rows["product_id"].tolist() == ["a",
                                           "b"] and rows["queries"][0] == ["usb cable", "black headphones"]
    reward = SummaryReward(scorer, opt, num_generations=2)
    summaries = [" usb c, 1 m", " black"]
    got = reward(completions=[summaries[0], summaries[1], summaries[0], summaries[1]],
                 title=["Cable X", "Cable X", "Bag Y", "Bag Y"],
                 queries=[rows["queries"][0]] * 2 + [rows["queries"][1]] * 2,
                 labels=[rows["labels"][0]] * 2 + [rows["labels"][1]] * 2)
    for i, (pid, s) in enumerate([("a", summaries[0]), ("a", summaries[1]), ("b", summaries[0]),
                                  ("b", summaries[1])]):
        sub = df[df["product_id"] == pid]
        r = scorer.score(sub["query"].tolist(), sub["title"].tolist(), [s.strip()] * len(sub))
        assert got[i] == pytest.approx(float(np.mean(-np.abs(r - sub["label"].to_numpy()))), abs=1e-6)
    # the other product's queries would give a different value: the average really is per product
    wrong = scorer.score(["laptop bag", "usb cable"], ["Cable X"] * 2, ["usb c, 1 m"] * 2)
    assert got[0] != pytest.approx(float(np.mean(-np.abs(wrong - np.array([0.75, 0.25])))), abs=1e-6)


def test_product_rows_seeded_query_sample():
    df = pd.DataFrame({"query": [f"q{i}" for i in range(10)], "product_id": "p", "title": "T", "text": "x",
                       "label": np.linspace(0, 1, 10)})
    a, b = product_rows(df, max_queries=3, seed=1), product_rows(df.iloc[::-1], max_queries=3, seed=1)
    assert len(a["queries"][0]) == 3 and sorted(a["queries"][0]) == sorted(b["queries"][0])
    pairs = dict(zip(df["query"], df["label"], strict=True))
    assert [pairs[q] for q in a["queries"][0]] == a["labels"][0]


def test_top_entropy_quantile_reaches_grpo_config(tmp_path):
    config = load_config(TrainConfig, None, ["options.top_entropy_quantile=0.2"])
    args = config.grpo.to_grpo_config(str(tmp_path), top_entropy_quantile=config.options.top_entropy_quantile)
    assert args.top_entropy_quantile == 0.2
    assert TrainConfig().grpo.to_grpo_config(str(tmp_path)).top_entropy_quantile == 1.0


def test_option_checks():
    with pytest.raises(ValueError, match="variance_credit"):
        OptionsConfig(variance_credit=1.5)
    with pytest.raises(ValueError, match="grpo only"):
        TrainConfig(algo="dpo", options=OptionsConfig(group_filter=True))


@pytest.mark.slow
def test_all_options_in_a_real_grpo_run(tmp_path, tiny_policy_dir, train_df, scorer):
    from relsum.training.grpo import train_grpo

    config = load_config(TrainConfig, None, [
        f"out_dir={tmp_path}", f"policy.model_dir={tiny_policy_dir}", "policy.lora_r=4",
        "policy.lora_alpha=8",
        "policy.max_prompt_tokens=128", "policy.max_summary_tokens=12", "grpo.per_device_train_batch_size=8",
        "grpo.gradient_accumulation_steps=1", "grpo.max_steps=2", "grpo.learning_rate=1e-3",
        "options.product_reward=true", "options.product_max_queries=2", "options.group_filter=true",
        "options.top_entropy_quantile=0.2", "options.variance_credit=0.5", "options.grounding_weight=0.5"])
    result = train_grpo(config, train_df, scorer)
    logged = {k for row in result["log_history"] for k in row}
    assert result["steps"] == 2 and result["rows"] == train_df["product_id"].nunique()
    assert {"group_filter/dropped_frac", "grounding/groundedness", "credit/forking_token_frac"} <= logged
    assert result["reward_stats"]["seen_groups"] == 4  # 2 steps x 8 completions / G=4
