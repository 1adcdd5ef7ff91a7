"""The train stage's ``run``: a typed :class:`TrainResult` of values (never the live model), the same
figures in ``train_result.json``, and the CLI's JSON printing of it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from relsum.core.config import load_config
from relsum.pipelines.configs import TrainStageConfig
from relsum.pipelines.train import TrainResult, heldout_metrics, run


def _walk(value):
    """Every value inside ``value``: dataclass fields, dict values, list items, recursively."""
    yield value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from _walk(getattr(value, field.name))
    elif isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _walk(item)


def test_heldout_metrics_flatten_scalars_ci_ends_and_label_shifts():
    row = {"label": 1.0, "shift": 0.1, "shift_ci95": [0.0, 0.2], "score_reference": 0.4, "score_trained": 0.5}
    flat = heldout_metrics({"heldout_pairs": 6, "reward_diff": 0.05, "reward_diff_ci95": [-0.1, 0.2],
                            "label_shifts": [row]})
    assert flat["heldout_heldout_pairs"] == 6.0 and flat["heldout_reward_diff"] == 0.05
    assert (flat["heldout_reward_diff_ci_low"], flat["heldout_reward_diff_ci_high"]) == (-0.1, 0.2)
    assert flat["heldout_label_1_shift"] == 0.1 and "heldout_reward_diff_ci95" not in flat
    assert heldout_metrics({}) == {}


@pytest.mark.slow  # one GRPO step and a held-out comparison on the tiny policy: ~20 s once it is built
def test_run_returns_a_train_result_of_values(tmp_path, tiny_policy_dir, tiny_cross_encoder_dir, train_df,
                                              scorer, capsys):
    import torch

    from relsum.cli_stages import show_training

    data = tmp_path / "pairs.parquet"
    train_df.to_parquet(data, index=False)
    config = load_config(TrainStageConfig, None, [
        f"trainer.train_data={data}", f"trainer.scorer_model_dir={tiny_cross_encoder_dir}",
        f"trainer.policy.model_dir={tiny_policy_dir}", f"trainer.out_dir={tmp_path / 'train'}",
        "trainer.policy.lora_r=4", "trainer.policy.lora_alpha=8", "trainer.policy.max_summary_tokens=8",
        "trainer.grpo.per_device_train_batch_size=4", "trainer.grpo.gradient_accumulation_steps=1",
        "trainer.grpo.max_steps=1", "trainer.max_train_rows=4", "holdout_fraction=0.3", "heldout_samples=0",
        "max_heldout_products=2", "n_boot=20", f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"tracking.artifact_location={(tmp_path / 'artifacts').as_uri()}"])
    result = run(config, scorer=scorer)

    assert isinstance(result, TrainResult) and result.algo == "grpo" and result.steps == 1
    assert (Path(result.adapter_dir) / "adapter_model.safetensors").is_file()
    assert result.policy_dir == str(tiny_policy_dir)
    assert not any(isinstance(v, torch.nn.Module | torch.Tensor) for v in _walk(result))
    assert result.heldout and result.metrics == heldout_metrics(result.heldout)
    assert result.mlflow_run_id and result.model_version == "1"
    assert Path(result.paths.heldout_summaries).is_file() and result.paths.dpo_pairs is None
    saved = json.loads(Path(result.paths.result).read_text())
    assert saved == json.loads(json.dumps(result.to_dict())) and "log_history" not in saved
    assert result.log_history and "trainer_stats" in saved and "model" not in saved["trainer_stats"]

    capsys.readouterr()  # TRL prints its step logs to stdout
    assert show_training(result, config, None) == 0
    assert json.loads(capsys.readouterr().out)["adapter_dir"] == result.adapter_dir
