"""Training configs: YAML + overrides, early validation, and the TRL config they build."""

from __future__ import annotations

import pytest

from relsum.core.config import ConfigError, load_config
from relsum.training.config import GRPOStageConfig, TrainConfig


def test_yaml_with_overrides(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("algo: dpo\npolicy:\n  lora_r: 16\n  target_modules: [q_proj, v_proj]\n"
                    "grpo:\n  extra: {top_p: 0.95}\n", encoding="utf-8")
    cfg = load_config(TrainConfig, path, ["grpo.learning_rate=2e-5", "dpo.beta=0.2",
                                          "policy.use_chat_template=true"])
    assert cfg.algo == "dpo" and cfg.policy.lora_r == 16 and cfg.policy.lora_alpha == 32
    assert cfg.policy.target_modules == ["q_proj", "v_proj"] and cfg.policy.use_chat_template is True
    assert cfg.grpo.learning_rate == 2e-5 and cfg.dpo.beta == 0.2
    args = cfg.grpo.to_grpo_config(str(tmp_path / "o"), max_completion_length=40)
    assert (args.learning_rate, args.top_p, args.num_generations, args.beta,
            args.epsilon) == (2e-5, 0.95, 4, 0.0, 0.2)
    assert args.max_completion_length == 40 and args.temperature == 0.9 and args.loss_type == "grpo"


def test_paper_defaults():
    cfg = TrainConfig()
    assert (cfg.policy.lora_r, cfg.policy.lora_alpha) == (32, 32)
    assert cfg.grpo.per_device_train_batch_size * cfg.grpo.gradient_accumulation_steps == 8
    assert (cfg.dpo.beta, cfg.dpo.samples_per_prompt, cfg.dpo.temperature) == (0.1, 2, 0.9)


def test_batch_must_be_multiple_of_generations():
    with pytest.raises(ValueError, match="multiple of num_generations"):
        GRPOStageConfig(per_device_train_batch_size=6, num_generations=4)
    with pytest.raises(ConfigError, match="multiple of num_generations"):
        load_config(TrainConfig, None, ["grpo.per_device_train_batch_size=6"])


def test_bad_values_fail_at_load():
    with pytest.raises(ConfigError, match="unknown GRPOConfig"):
        load_config(TrainConfig, None, ["grpo.extra={not_a_trl_arg: 1}"])
    with pytest.raises(ConfigError, match="not one of"):
        load_config(TrainConfig, None, ["algo=ppo"])
    with pytest.raises(ConfigError, match="unknown config keys"):
        load_config(TrainConfig, None, ["grpo.lerning_rate=1"])


def test_trl_configs_use_activation_checkpointing_without_the_deprecation_warning(tmp_path):
    import warnings

    cfg = TrainConfig()
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # transformers warns on the old name (gone in v6)
        grpo = cfg.grpo.to_grpo_config(str(tmp_path / "g"))
        dpo = cfg.dpo.to_dpo_config(str(tmp_path / "d"))
    # off on the CPU (it only costs time there); the old name mirrors the new one for TRL's own checks
    assert (grpo.activation_checkpointing, grpo.gradient_checkpointing) == (False, False)
    assert (dpo.activation_checkpointing, dpo.gradient_checkpointing) == (False, False)
    # a user's deprecated key in extra still wins over our default
    cfg.grpo.extra = {"gradient_checkpointing": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        args = cfg.grpo.to_grpo_config(str(tmp_path / "e"))
    assert args.activation_checkpointing is True and args.gradient_checkpointing is True
