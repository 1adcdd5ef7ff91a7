"""Real TRL GRPO and DPO steps on the tiny policy (CPU): LoRA weights move, base weights do not."""

from __future__ import annotations

import pytest
import torch

from relsum.core.config import load_config
from relsum.policy.load import load_policy
from relsum.training.config import TrainConfig


def _config(tmp_path, policy_dir, algo):
    return load_config(TrainConfig, None, [
        f"algo={algo}", f"out_dir={tmp_path}", f"policy.model_dir={policy_dir}", "policy.lora_r=4",
        "policy.lora_alpha=8", "policy.max_prompt_tokens=128", "policy.max_summary_tokens=12",
        "grpo.per_device_train_batch_size=8", "grpo.gradient_accumulation_steps=1", "grpo.max_steps=2",
        "grpo.learning_rate=1e-3", "dpo.max_steps=2", "dpo.per_device_train_batch_size=4",
        "dpo.learning_rate=1e-3", "dpo.min_reward_margin=0", "max_train_rows=8",
    ])


def _check_weights(trained, policy_dir):
    base, _ = load_policy(policy_dir)
    fresh = base.state_dict()
    state = {k.replace("base_model.model.", "", 1).replace(".base_layer", ""): v
             for k, v in trained.state_dict().items()}
    lora_b = [v for k, v in state.items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # B starts at zero: non-zero = trained
    for key, value in fresh.items():
        assert torch.equal(state[key], value), key


def _check_adapter(result, policy_dir, train_df):
    from relsum.policy.generate import generate_summaries

    adapter = result["adapter_dir"]
    assert list(__import__("pathlib").Path(adapter).glob("adapter_model.safetensors"))
    model, tok = load_policy(policy_dir, adapter, merge=True)
    outs = generate_summaries(model, tok, train_df["title"][:2].tolist(), train_df["text"][:2].tolist(),
                              max_new_tokens=8)
    assert len(outs) == 2


@pytest.mark.slow
def test_grpo_steps(tmp_path, tiny_policy_dir, train_df, scorer):
    from relsum.training.grpo import train_grpo

    result = train_grpo(_config(tmp_path, tiny_policy_dir, "grpo"), train_df, scorer)
    assert result["steps"] == 2 and result["reward_seconds"] > 0 and result["rows"] == 8
    assert any("reward" in row for row in result["log_history"])
    _check_weights(result["model"], tiny_policy_dir)
    _check_adapter(result, tiny_policy_dir, train_df)


@pytest.mark.slow
def test_dpo_steps(tmp_path, tiny_policy_dir, train_df, scorer):
    from relsum.training.dpo import train_dpo

    result = train_dpo(_config(tmp_path, tiny_policy_dir, "dpo"), train_df, scorer)
    pairs = result["pairs"]
    assert result["steps"] == 2 and len(pairs) + result["pair_stats"]["near_ties_dropped"] == 8
    assert (pairs["reward_chosen"] > pairs["reward_rejected"]).all()
    assert pairs["chosen"].str.startswith(" ").all()
    _check_weights(result["model"], tiny_policy_dir)
    _check_adapter(result, tiny_policy_dir, train_df)


def test_preference_pairs_margin(tiny_policy_dir, train_df, scorer, tmp_path):
    from relsum.training.dpo import build_preference_pairs

    model, tok = load_policy(tiny_policy_dir)
    cfg = load_config(TrainConfig, None, [f"out_dir={tmp_path}", "dpo.min_reward_margin=2.0",
                                          "policy.max_summary_tokens=8", "max_train_rows=4"])
    pairs, stats = build_preference_pairs(model, tok, train_df, scorer, cfg)
    assert pairs.empty and stats["near_ties_dropped"] == 4  # rewards differ by at most 1 < 2


def test_missing_columns_are_an_error(tmp_path, train_df, scorer):
    from relsum.training.grpo import train_grpo

    with pytest.raises(ValueError, match="lacks columns"):
        train_grpo(TrainConfig(out_dir=str(tmp_path)), train_df.drop(columns=["label"]), scorer)
