"""The stage configs extend one optimizer base (``OptimizerConfig``) without changing a key: every field's
name, type, default and help is the one of the three separate dataclasses before (git 6bb4258), and the
TrainingArguments they build are the same."""

from __future__ import annotations

import dataclasses

import pytest

from relsum.core.config import load_config
from relsum.training.config import (
    DPOStageConfig,
    GRPOStageConfig,
    OptimizerConfig,
    RFTStageConfig,
    TrainConfig,
)

#: (type, default, help) of every field as declared before the base existed (generated from git 6bb4258).
BEFORE = {'GRPOStageConfig': {'num_generations': ('int', 4, 'G, completions per prompt (paper: 4)'),
                         'temperature': ('float', 0.9, 'sampling temperature (paper: 0.9)'),
                         'beta': ('float',
                                  0.0,
                                  'KL coefficient (paper: 0.0, so no reference model is kept)'),
                         'epsilon': ('float', 0.2, 'clipping epsilon (paper: 0.2)'),
                         'learning_rate': ('float', 1e-05, 'AdamW learning rate (paper: 1e-5)'),
                         'lr_scheduler_type': ('str', 'cosine', 'scheduler (paper: cosine)'),
                         'num_train_epochs': ('float', 1.0, 'epochs (paper: 1)'),
                         'max_steps': ('int',
                                       -1,
                                       'stop after this many optimizer steps (-1 = epochs decide)'),
                         'loss_type': ('str',
                                       'grpo',
                                       "TRL loss_type; 'grpo' = the paper's per-sequence length "
                                       'normalisation'),
                         'per_device_train_batch_size': ('int',
                                                         4,
                                                         'completions per device step; multiple of '
                                                         'num_generations'),
                         'gradient_accumulation_steps': ('int',
                                                         2,
                                                         "4 x 2 = the paper's batch of 8 "
                                                         'completions per update'),
                         'logging_steps': ('int', 1, 'log every n steps'),
                         'extra': ('dict',
                                   {},
                                   'more trl.GRPOConfig kwargs, merged on top (e.g. {bf16: true, '
                                   'use_cpu: false})'),
                         'use_vllm': ('bool',
                                      False,
                                      'generate GRPO completions with vLLM (GPU runs only: needs '
                                      'policy.bf16=true and the vllm package)'),
                         'vllm_mode': ('str',
                                       'colocate',
                                       'colocate: vLLM inside each training process, sharing its '
                                       'GPU; server: a separate `trl vllm-serve` process at '
                                       'vllm_server_base_url'),
                         'vllm_server_base_url': ('str',
                                                  '',
                                                  "server mode: e.g. http://localhost:8000 ('' = "
                                                  "TRL's host/port default)"),
                         'vllm_gpu_memory_utilization': ('float',
                                                         0.3,
                                                         'colocate mode: GPU memory fraction vLLM '
                                                         'may take'),
                         'vllm_tensor_parallel_size': ('int',
                                                       1,
                                                       'colocate mode: GPUs per vLLM instance')},
     'DPOStageConfig': {'beta': ('float', 0.1, 'DPO beta (paper: 0.1)'),
                        'samples_per_prompt': ('int',
                                               2,
                                               'summaries sampled per prompt from the reference '
                                               'policy (paper: 2)'),
                        'temperature': ('float',
                                        0.9,
                                        'sampling temperature for the pairs (paper: 0.9)'),
                        'pairing': ('str',
                                    'paper',
                                    'paper: one pair per (query, product) row from '
                                    'samples_per_prompt samples, pair-level reward; best_worst: '
                                    'one pair per product, best vs worst of samples_per_product '
                                    'samples by the product-level reward (mean over its training '
                                    "queries), every product's queries used"),
                        'samples_per_product': ('int',
                                                8,
                                                'pairing=best_worst: summaries sampled per product '
                                                '(N)'),
                        'min_reward_margin': ('float',
                                              0.01,
                                              'drop pairs whose rewards differ by less than this '
                                              '(near-ties)'),
                        'generation_batch_size': ('int',
                                                  16,
                                                  'prompts per generation batch when sampling '
                                                  'pairs'),
                        'learning_rate': ('float', 1e-05, 'AdamW learning rate (paper: 1e-5)'),
                        'lr_scheduler_type': ('str', 'cosine', 'scheduler (paper: cosine)'),
                        'num_train_epochs': ('float', 1.0, 'epochs (paper: 1)'),
                        'max_steps': ('int',
                                      -1,
                                      'stop after this many optimizer steps (-1 = epochs decide)'),
                        'per_device_train_batch_size': ('int', 8, 'pairs per step (paper: 8)'),
                        'gradient_accumulation_steps': ('int', 1, 'gradient accumulation'),
                        'logging_steps': ('int', 1, 'log every n steps'),
                        'extra': ('dict', {}, 'more trl.DPOConfig kwargs, merged on top')},
     'RFTStageConfig': {'samples_per_product': ('int',
                                                8,
                                                'N, summaries sampled per product and round (best '
                                                'one kept)'),
                        'rounds': ('int',
                                   1,
                                   'sample-then-train rounds; round 2 samples from the round-1 '
                                   'adapter'),
                        'temperature': ('float',
                                        0.9,
                                        "sampling temperature (paper's GRPO/DPO value)"),
                        'generation_batch_size': ('int',
                                                  16,
                                                  'products per generation batch (each runs its '
                                                  'prompt once for all N samples)'),
                        'max_queries': ('int',
                                        0,
                                        'product-level reward over at most this many training '
                                        'queries per product (seeded sample; 0 = all)'),
                        'min_gain': ('float',
                                     0.0,
                                     "keep a product's best sample only when its reward beats the "
                                     'mean of its N samples by at least this (0 = keep every '
                                     "product's best)"),
                        'learning_rate': ('float',
                                          0.0001,
                                          'AdamW learning rate of the LoRA (LoRA takes ~10x a full '
                                          "fine-tune's rate)"),
                        'lr_scheduler_type': ('str', 'cosine', 'scheduler, per round'),
                        'num_train_epochs': ('float',
                                             1.0,
                                             'epochs over the kept summaries, per round'),
                        'max_steps': ('int',
                                      -1,
                                      'stop each round after this many optimizer steps (-1 = '
                                      'epochs decide)'),
                        'per_device_train_batch_size': ('int', 8, 'kept summaries per step'),
                        'gradient_accumulation_steps': ('int', 1, 'gradient accumulation'),
                        'logging_steps': ('int', 1, 'log every n steps'),
                        'extra': ('dict', {}, 'more trl.SFTConfig kwargs, merged on top')}}

#: fields added to a stage since then (issue 22: the sampling arms draw a subset of the products)
ADDED = {"DPOStageConfig": {"max_products": (
             "int", 0, "pairing=best_worst: pair only a seeded draw of this many training products (sampling "
                       "N of every product comes before the first step); 0 = all")},
         "RFTStageConfig": {"products_per_round": (
             "int", 0, "sample only a seeded draw of this many training products per round, a new draw each "
                       "round (under a budget, more rounds of fewer products reach a first update sooner); "
                       "0 = every product")}}

SHARED = ("learning_rate", "lr_scheduler_type", "num_train_epochs", "max_steps",
          "per_device_train_batch_size", "gradient_accumulation_steps", "logging_steps", "extra")


def _fields(cls: type) -> dict[str, tuple]:
    return {f.name: (f.type, f.default if f.default is not dataclasses.MISSING else f.default_factory(),
                     f.metadata.get("help")) for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("cls", [GRPOStageConfig, DPOStageConfig, RFTStageConfig], ids=lambda c: c.__name__)
def test_fields_defaults_and_help_are_unchanged(cls):
    assert issubclass(cls, OptimizerConfig)
    # same keys, types, defaults and help (order aside), plus the fields added since
    assert _fields(cls) == {**BEFORE[cls.__name__], **ADDED.get(cls.__name__, {})}
    assert set(SHARED) <= {f.name for f in dataclasses.fields(OptimizerConfig)}


@pytest.mark.parametrize("cls", [GRPOStageConfig, DPOStageConfig, RFTStageConfig], ids=lambda c: c.__name__)
def test_trainer_kwargs_carry_each_stage_values(cls):
    config = cls()
    kwargs = config.trainer_kwargs("o", seed=3, report_to="none", bf16=False)
    assert {k: kwargs[k] for k in SHARED if k != "extra"} == {k: BEFORE[cls.__name__][k][1] for k in SHARED
                                                              if k != "extra"}
    assert kwargs["use_cpu"] and not kwargs["activation_checkpointing"] and kwargs["seed"] == 3
    changed = cls(learning_rate=0.5).trainer_kwargs("o", seed=0, report_to="none", bf16=True)
    assert changed["learning_rate"] == 0.5 and changed["bf16"] and not changed["use_cpu"]


def test_yaml_keys_of_the_shared_fields_still_load():
    config = load_config(TrainConfig, overrides=["grpo.learning_rate=0.25", "dpo.logging_steps=3",
                                                 "rft.gradient_accumulation_steps=2", "rft.max_steps=7"])
    assert (config.grpo.learning_rate, config.dpo.logging_steps) == (0.25, 3)
    assert (config.rft.gradient_accumulation_steps, config.rft.max_steps) == (2, 7)
    assert config.dpo.learning_rate == 1e-5 and config.rft.learning_rate == 1e-4  # each stage's own default


def test_unknown_extra_key_is_refused_against_the_stage_trl_class():
    with pytest.raises(ValueError, match=r"unknown DPOConfig arguments \['no_such_arg'\]"):
        DPOStageConfig(extra={"no_such_arg": 1})
    with pytest.raises(ValueError, match="rft.rounds"):  # the stage's own checks still run first
        RFTStageConfig(rounds=0, extra={"no_such_arg": 1})


def test_old_train_section_of_the_train_stage_still_loads_with_one_warning(tmp_path, caplog):
    """``TrainStageConfig.train`` is now ``trainer`` (the demo's ``train.train.*`` read as a stutter); a
    config written before still loads, the new key's values on top, with one deprecation line."""
    from relsum.pipelines.configs import DemoConfig, TrainStageConfig

    old_yaml = tmp_path / "train.yaml"
    old_yaml.write_text("train:\n  algo: dpo\n  grpo:\n    max_steps: 3\n    learning_rate: 0.5\n")
    config = load_config(TrainStageConfig, old_yaml, ["trainer.grpo.max_steps=4"])
    assert (config.trainer.algo, config.trainer.grpo.max_steps, config.trainer.grpo.learning_rate) == (
        "dpo", 4, 0.5)
    assert [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()] == [
        "config key train is deprecated: it is now trainer"]
    demo = load_config(DemoConfig, overrides=["train.train.grpo.max_steps=5"])
    assert demo.train.trainer.grpo.max_steps == 5 and demo.train.trainer.policy.model_dir == "smollm2"
    assert "config key train.train is deprecated: it is now train.trainer" in caplog.text
    assert "train" not in {f.name for f in dataclasses.fields(TrainStageConfig)}
