"""A stage config's ``scorer`` section reaches the scorer that stage scores with: YAML -> forward pass."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from relsum.core.config import ConfigError, load_config
from relsum.scoring import batching, factory
from relsum.scoring.config import ScorerConfig
from relsum.scoring.scorer import Scorer

SCORING = Path(__file__).resolve().parents[2] / "relsum" / "scoring"

#: (module, config class, YAML keys the class requires): every stage config that scores.
STAGE_CONFIGS = [
    ("relsum.pipelines.configs", "TrainStageConfig", ""),
    ("relsum.pipelines.configs", "DemoConfig", ""),
    ("relsum.pipelines.configs", "BuildPairsConfig", ""),
    ("relsum.pipelines.configs", "EvaluateConfig", ""),
    ("relsum.pipelines.configs", "ExportConfig",
     "candidates: c.csv\ncatalog: p.csv\nsummaries: s.csv\n"),
    ("relsum.pipelines.configs", "AblateConfig", ""),
    ("relsum.pipelines.configs", "DagConfig", ""),
]
#: Configs that run other stages with their one scorer, and their nested stage sections.
OUTER = [("relsum.pipelines.configs", "DemoConfig", ("pairs", "train")),
         ("relsum.pipelines.configs", "AblateConfig", ("build",)),
         ("relsum.pipelines.configs", "DagConfig", ("pairs", "train"))]


def _cls(module: str, name: str) -> type:
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize(("module", "name", "required"), STAGE_CONFIGS)
def test_every_scoring_stage_config_loads_a_scorer_section(tmp_path, module, name, required):
    yaml_file = tmp_path / "stage.yaml"
    yaml_file.write_text(required + "scorer:\n  max_tokens_per_batch: 4096\n  path: onnx-fp32\n")
    config = load_config(_cls(module, name), yaml_file, ["scorer.num_threads=1"])
    assert isinstance(config.scorer, ScorerConfig)
    assert (config.scorer.max_tokens_per_batch, config.scorer.path, config.scorer.num_threads) == (
        4096, "onnx-fp32", 1)
    assert config.scorer.store  # the stages' default, kept under a partial section
    with pytest.raises(ConfigError, match="max_tokens_per_batch"):
        load_config(_cls(module, name), yaml_file, ["scorer.max_tokens_per_batch=8"])  # below max_length


@pytest.mark.parametrize(("module", "name", "nested"), OUTER)
def test_outer_stage_has_one_scorer_section_its_nested_stages_follow(module, name, nested):
    cls = _cls(module, name)
    config = load_config(cls, None, ["scorer.max_tokens_per_batch=4096"])
    for section in nested:
        assert getattr(config, section).scorer is config.scorer
    assert config.scorer.max_tokens_per_batch == 4096
    with pytest.raises(ConfigError, match=r"set scorer\.max_tokens_per_batch instead"):
        load_config(cls, None, [f"{nested[0]}.scorer.max_tokens_per_batch=4096"])


def test_build_pairs_setting_reaches_the_forward_pass(tmp_path, sample_dir, tiny_cross_encoder_dir,
                                                      monkeypatch):
    """``scorer.max_tokens_per_batch`` from the stage YAML bounds every batch the runner is given."""
    from relsum.pipelines import build_pairs
    from relsum.pipelines.configs import BuildPairsConfig

    log = pd.read_csv(sample_dir / "search_log.csv", dtype=str, keep_default_na=False).head(40)
    log.to_csv(tmp_path / "log.csv", index=False)
    yaml_file = tmp_path / "pairs.yaml"
    yaml_file.write_text(f"reward_model: {tiny_cross_encoder_dir}\nsearch_log: {tmp_path / 'log.csv'}\n"
                         f"out_dir: {tmp_path / 'out'}\nfilter:\n  mode: top_fraction\n"
                         "scorer:\n  max_length: 64\n  store: false\n")
    config = load_config(BuildPairsConfig, yaml_file, ["scorer.max_tokens_per_batch=128"])
    built: list[Scorer] = []
    batches: list[tuple[int, int]] = []
    make, feature_batches = factory.make_scorer, batching.feature_batches

    def spy_make(model_dir, scorer_config):
        built.append(make(model_dir, scorer_config))
        return built[-1]

    def spy_batches(tokenizer, pairs, scorer_config, **kw):
        for idx, feats in feature_batches(tokenizer, pairs, scorer_config, **kw):
            batches.append(feats["input_ids"].shape)
            yield idx, feats

    monkeypatch.setattr(factory, "make_scorer", spy_make)
    monkeypatch.setattr(batching, "feature_batches", spy_batches)
    result = build_pairs.run(config)
    assert len(built) == 1 and built[0].config is config.scorer
    assert built[0].config.max_tokens_per_batch == 128 and built[0].config.max_length == 64
    assert result.stats["scorer_fingerprint"] == built[0].fingerprint
    cells = np.array([rows * width for rows, width in batches])
    assert len(batches) > 1 and cells.max() <= 128  # rows x padded width within the stage's budget
    assert max(rows for rows, _ in batches) > 1  # short pairs still share batches under the budget


def test_dag_scorer_runs_the_configured_path_through_the_gate(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from relsum.pipelines import dag_common
    from relsum.scoring.tiny import build_tiny_cross_encoder

    model = build_tiny_cross_encoder(tmp_path / "spread", seed=1, initializer_range=0.5)
    config = dag_common.load(None, [f"reward_model={model}", "scorer.path=onnx-fp32", "scorer.max_length=128",
                                    f"scorer.store_dir={tmp_path / 'store'}", "scorer.gate_max_pairs=100"])
    scorer = dag_common.dag_scorer(config)
    assert scorer.config is config.scorer and config.train.scorer is config.scorer
    assert scorer.path == "onnx-fp32" and scorer.gate_result.passed
    assert scorer.fingerprint == scorer.path_fingerprint("onnx-fp32") != scorer.fp32_fingerprint


def test_a_bare_scorer_never_runs_an_ungated_path(tmp_path, tiny_cross_encoder_dir):
    scorer = Scorer(tiny_cross_encoder_dir, ScorerConfig(max_length=64, path="onnx-fp32",
                                                        store_dir=str(tmp_path)))
    assert not scorer.selected
    with pytest.raises(RuntimeError, match="make_scorer"):
        scorer.score(["usb cable"], ["Belkin USB-C cable"])
    with pytest.raises(RuntimeError, match="make_scorer"):
        _ = scorer.fingerprint
    with pytest.raises(ValueError, match="passed fidelity gate"):
        scorer.use_path("onnx-fp32", scorer.fp32_runner)
    assert not list(tmp_path.rglob("gate-*.json"))  # Scorer() alone ran no gate
    # the public pieces the gate and auto use: an explicit runner scores without a selected path
    out = scorer.compute([("usb cable", "Belkin USB-C cable")], runner=scorer.fp32_runner)
    assert out.shape == (1,) and 0 < out[0] < 1


def _imports(module: str) -> set[str]:
    tree = ast.parse((SCORING / f"{module}.py").read_text())
    return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}


def test_no_import_cycle_and_no_private_scorer_members():
    assert not {"relsum.scoring.fidelity", "relsum.scoring.auto_path", "relsum.scoring.factory"} & _imports(
        "scorer")
    for module in ("fidelity", "auto_path", "int8_static", "batching", "documents"):
        assert not {"relsum.scoring.scorer", "relsum.scoring.factory"} & _imports(module), module
    for path in SCORING.glob("*.py"):
        tree = ast.parse(path.read_text())
        private = [n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
                   and n.attr.startswith("_") and not n.attr.startswith("__")
                   and isinstance(n.value, ast.Name) and n.value.id == "scorer"]
        assert not private, (path.name, private)
