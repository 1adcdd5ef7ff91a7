"""``relsum train`` under ``accelerate launch`` with 2 CPU processes (DDP, gloo) vs 1 process, same global
batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from relsum.training import distributed

REPO = Path(__file__).resolve().parents[2]
ACCELERATE_CPU = REPO / "relsum" / "configs" / "accelerate_cpu_ddp.yaml"


def test_rank_helpers_without_a_launcher(monkeypatch):
    for name in ("WORLD_SIZE", "RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main_process()
    distributed.init(cpu=True)  # not launched: no process group, nothing to wait for
    distributed.barrier()
    with distributed.main_process_first():
        pass
    monkeypatch.setenv("RANK", "1")
    assert not distributed.is_main_process()


def test_vllm_settings_reach_trl_and_need_a_gpu_run(tmp_path):
    from relsum.core.config import ConfigError, load_config
    from relsum.training.config import TrainConfig

    with pytest.raises((ConfigError, ValueError), match="use_vllm generates on a GPU"):
        load_config(TrainConfig, None, ["grpo.use_vllm=true"])
    config = load_config(TrainConfig, None, ["policy.bf16=true", "grpo.use_vllm=true",
                                             "grpo.vllm_mode=server",
                                             "grpo.vllm_server_base_url=http://vllm:8000"])
    args = config.grpo.to_grpo_config(str(tmp_path), bf16=False)  # bf16=False: GRPOConfig checks devices
    assert args.use_vllm and args.vllm_mode == "server" and args.vllm_server_base_url == "http://vllm:8000"
    with pytest.raises((ConfigError, ValueError), match="vllm_mode"):
        load_config(TrainConfig, None, ["grpo.vllm_mode=remote"])


def _train(tmp_path: Path, name: str, data: Path, policy: Path, reward: Path, per_device: int,
           launcher: list[str]) -> subprocess.CompletedProcess:
    db = tmp_path / "mlflow.db"
    args = [
        f"trainer.train_data={data}", f"trainer.scorer_model_dir={reward}",
        f"trainer.policy.model_dir={policy}",
        f"trainer.out_dir={tmp_path / name}", "trainer.policy.lora_r=4", "trainer.policy.lora_alpha=8",
        "trainer.policy.max_summary_tokens=8", "trainer.grpo.max_steps=2",
        "trainer.grpo.gradient_accumulation_steps=1",
        f"trainer.grpo.per_device_train_batch_size={per_device}", "trainer.grpo.learning_rate=1e-3",
        "trainer.max_train_rows=8", "holdout_fraction=0", "heldout_samples=0",
        f"tracking.tracking_uri=sqlite:///{db}",
        f"tracking.artifact_location={(tmp_path / 'artifacts').as_uri()}", f"tracking.experiment={name}",
        f"tracking.registered_model=summarizer-{name}",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": "1", "RELSUM_HOME": str(tmp_path / "home")}
    return subprocess.run([*launcher, "-m", "relsum.cli", "train", *args], capture_output=True, text=True,
                          env=env, timeout=600, cwd=tmp_path)


def _lora_b_norm(adapter: Path) -> float:
    from safetensors.torch import load_file

    state = load_file(str(adapter / "adapter_model.safetensors"))
    return float(sum(v.float().norm() ** 2 for k, v in state.items() if "lora_B" in k) ** 0.5)


@pytest.mark.slow
def test_grpo_two_cpu_processes_match_one_process(tmp_path, tiny_policy_dir, tiny_cross_encoder_dir,
                                                  train_df):
    import mlflow

    data = tmp_path / "pairs.parquet"
    train_df.to_parquet(data, index=False)
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ACCELERATE_CPU)]
    two = _train(tmp_path, "two", data, tiny_policy_dir, tiny_cross_encoder_dir, 4, accelerate)
    assert two.returncode == 0, two.stderr[-4000:]
    one = _train(tmp_path, "one", data, tiny_policy_dir, tiny_cross_encoder_dir, 8, [sys.executable])
    assert one.returncode == 0, one.stderr[-4000:]

    # one adapter, one result file, no temporaries left by a second writer
    assert sorted(p.name for p in (tmp_path / "two").iterdir() if "adapter" in p.name) == ["adapter"]
    assert (tmp_path / "two" / "adapter" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "two" / "train_result.json").is_file()

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = {}
    for name in ("two", "one"):
        experiment = client.get_experiment_by_name(name)
        found = client.search_runs([experiment.experiment_id])
        assert len(found) == 1, f"{name}: {len(found)} MLflow runs"  # rank 1 opened none
        runs[name] = found[0]
        versions = client.search_model_versions(f"name='summarizer-{name}'")
        assert len(versions) == 1 and versions[0].run_id == found[0].info.run_id

    # same global batch (2 processes x 4 completions = 1 process x 8): same epoch fraction after 2 steps,
    # rewards of the same prompts from the same initial policy within sampling noise, similar update size
    epochs = {n: [m.value for m in client.get_metric_history(r.info.run_id, "epoch")] for n,
              r in runs.items()}
    assert epochs["two"][-1] == pytest.approx(epochs["one"][-1])
    rewards = {n: client.get_metric_history(r.info.run_id, "reward") for n, r in runs.items()}
    assert len(rewards["two"]) == len(rewards["one"]) == 2
    first = {n: next(m.value for m in h if m.step == min(x.step for x in h)) for n, h in rewards.items()}
    assert abs(first["two"] - first["one"]) < 0.3, first  # rewards -|r - l| lie in [-1, 0]
    norms = {n: _lora_b_norm(tmp_path / n / "adapter") for n in ("two", "one")}
    assert all(v > 0 for v in norms.values()) and 0.5 < norms["two"] / norms["one"] < 2.0, norms
