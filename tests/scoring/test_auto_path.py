"""path=auto: gate and time the candidate paths once per machine, cache the choice, use the fastest."""

from __future__ import annotations

import json

import pytest

from relsum.core import machine
from relsum.scoring import auto_path
from relsum.scoring.config import PATH_ENV, ScorerConfig
from relsum.scoring.factory import make_scorer


@pytest.fixture(scope="module")
def spread_model_dir(tmp_path_factory):
    from relsum.scoring.tiny import build_tiny_cross_encoder

    return build_tiny_cross_encoder(tmp_path_factory.mktemp("spread_auto"), seed=1, initializer_range=0.5)


def test_machine_description_names_cpu_flags_threads_and_versions():
    line = machine.describe()
    for flag in machine.FLAGS_THAT_MATTER:
        assert f"{flag}+" in line or f"{flag}-" in line
    assert "torch threads" in line and "onnxruntime" in line and machine.cpu_class() in line
    assert machine.cpu_key(2) == machine.cpu_key(2) != machine.cpu_key(3)  # threads are part of the key
    assert machine.native_bf16() == machine.has_flag("avx512_bf16", "amx_bf16")


def test_path_defaults_to_the_environment(monkeypatch):
    monkeypatch.delenv(PATH_ENV, raising=False)
    assert ScorerConfig().path == "fp32"
    monkeypatch.setenv(PATH_ENV, "auto")
    assert ScorerConfig().path == "auto"
    monkeypatch.setenv(PATH_ENV, "fp8")
    with pytest.raises(ValueError, match="path must be one of"):
        ScorerConfig()
    with pytest.raises(ValueError, match="auto_paths"):
        ScorerConfig(path="fp32", auto_paths=["fast"])


def test_auto_measures_once_caches_and_explains(tmp_path, spread_model_dir, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setattr(auto_path, "TIMING_PAIRS", 48)  # small: the figures are recorded, not asserted
    monkeypatch.setattr(auto_path, "ROUNDS", 1)
    config = ScorerConfig(max_length=128, path="auto", auto_paths=["onnx-fp32", "fp16-cuda"], store=True,
                          store_dir=str(tmp_path), gate_max_pairs=100)
    scorer = make_scorer(spread_model_dir, config)
    files = list((tmp_path / auto_path.AUTO_DIR).glob("*.json"))
    assert len(files) == 1
    choice = json.loads(files[0].read_text())
    figures = choice["figures"]
    assert choice["chosen"] == scorer.path in ("fp32", "onnx-fp32")
    assert figures["fp32"]["ratio_to_fp32"] == 1.0 and figures["onnx-fp32"]["status"] == "passed"
    assert figures["onnx-fp32"]["pairs_per_s"] > 0
    assert "passed the fidelity gate" in figures["onnx-fp32"]["detail"]
    if figures["fp16-cuda"]["status"] == "unavailable":  # a CPU machine: refused with its reason, not timed
        assert "CUDA" in figures["fp16-cuda"]["detail"] and "pairs_per_s" not in figures["fp16-cuda"]
    assert choice["machine"]["cpu_class"] == machine.cpu_class()
    assert scorer.fingerprint == scorer.path_fingerprint(scorer.path)
    assert scorer.score(["usb cable"], ["Belkin USB-C cable"]).shape == (1,)

    stamp = files[0].stat().st_mtime_ns
    again = make_scorer(spread_model_dir, config)  # read from the cache, not measured again
    assert again.path == scorer.path and files[0].stat().st_mtime_ns == stamp

    from relsum.pipelines.configs import StatsConfig
    from relsum.pipelines.scores import auto_choices, format_stats, stats

    stats_config = StatsConfig(store_dir=str(tmp_path))
    rows = {r["fingerprint"]: r for r in stats(stats_config)}
    assert rows[scorer.fingerprint]["path"] == scorer.path
    assert rows[scorer.fingerprint]["path_reason"].startswith("auto: ")
    text = format_stats(list(rows.values()), auto_choices(stats_config))
    assert f"auto {choice['key'][:12]}: {scorer.path}" in text and "onnx-fp32" in text


def test_auto_falls_back_to_fp32_when_nothing_else_may_run(tmp_path, spread_model_dir, monkeypatch):
    monkeypatch.setattr(auto_path, "TIMING_PAIRS", 16)
    config = ScorerConfig(max_length=128, path="auto", auto_paths=["fp16-cuda"], store_dir=str(tmp_path),
                          gate_max_pairs=100)
    import torch

    if torch.cuda.is_available():
        pytest.skip("fp16-cuda can run here")
    scorer = make_scorer(spread_model_dir, config)
    assert scorer.path == "fp32" and "no gate-passing path" in scorer.auto_choice["reason"]
