"""The demo's helpers without a policy: golden subset, label balance, per-label shifts, side-by-side
examples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def test_golden_subset_keeps_whole_queries_and_says_so(tmp_path, sample_dir):
    from relsum.data.golden import load_golden
    from relsum.pipelines.configs import DemoConfig
    from relsum.pipelines.demo_report import golden_subset

    full = load_golden(sample_dir / "golden")
    folder, note = golden_subset(str(sample_dir / "golden"), 60, 3, tmp_path / "sub")
    sub = load_golden(folder)
    assert 0 < sub.judgments["product_id"].nunique() <= 60 and not sub.n_rejected
    assert "seeded subset" in note and "golden_products=60" in note
    for qid, group in sub.judgments.groupby("query_id"):  # every kept query keeps its full candidate list
        expected = full.judgments.loc[full.judgments["query_id"] == qid, "product_id"]
        assert set(group["product_id"]) == set(expected)
    assert sub.queries["tail"].any() and (~sub.queries["tail"]).any()
    again, _ = golden_subset(str(sample_dir / "golden"), 60, 3, tmp_path / "again")
    assert pd.read_csv(f"{again}/judgments.csv").equals(pd.read_csv(f"{folder}/judgments.csv"))  # seeded
    assert golden_subset(str(sample_dir / "golden"), 0, 0, tmp_path / "all")[0] == str(sample_dir / "golden")
    with pytest.raises(ValueError, match="golden_products"):
        DemoConfig(golden_products=-1)


def test_balance_labels_per_product():
    from relsum.pipelines.train import balance_labels

    pairs = pd.DataFrame({"product_id": ["a"] * 5 + ["b"] * 2 + ["c"] * 3,
                          "query": [f"q{i}" for i in range(10)],
                          "label": [0.0, 0.0, 0.0, 1.0, 0.5, 0.0, 0.0, 1.0, 1.0, 0.0]})
    out = balance_labels(pairs, seed=0)
    counts = out.groupby(["product_id", "label"]).size()
    assert counts.loc["a"].tolist() == [1, 1, 1]  # 3 x label 0 cut to the rarest label's count
    assert counts.loc["b"].tolist() == [2]  # one label value: kept whole
    assert counts.loc["c"].tolist() == [1, 1]
    assert out.equals(balance_labels(pairs, seed=0))


def test_label_shifts_and_report_lines():
    from relsum.pipelines.demo import heldout_lines
    from relsum.training.policy_eval import label_shifts

    pairs = pd.DataFrame({"product_id": ["a", "a", "b", "b", "c", "c"], "label": [0, 1, 0, 1, 0, 0.5]})
    ref = np.array([0.5, 0.5, 0.4, 0.6, 0.5, 0.5])
    new = ref - 0.1  # a template that lowers every score
    rows = label_shifts(pairs, ref, new, n_boot=50)
    assert [r["label"] for r in rows] == [0.0, 0.5, 1.0] and [r["pairs"] for r in rows] == [3, 1, 2]
    assert all(r["shift"] == pytest.approx(-0.1) for r in rows)
    assert rows[0]["share"] == pytest.approx(0.5) and rows[2]["score_trained"] == pytest.approx(0.45)
    lines = heldout_lines({"heldout_pairs": 6, "heldout_products": 3, "reward_reference": -0.4,
                           "reward_trained": -0.38,
                           "reward_diff": 0.02, "reward_diff_ci95": [-0.01, 0.05],
                           "label_shifts": rows}, "grpo")
    assert any("label 1" in line and "shift -0.1000" in line for line in lines)


def test_pooled_seed_lines_average_seeds_and_combine_their_intervals():
    from relsum.pipelines.demo_report import pooled_seed_lines

    def seed(diff, half):  # a seed's held-out figures with a symmetric CI of half-width `half`
        return {"sampled_reward_diff": diff, "sampled_reward_diff_ci95": [diff - half, diff + half],
                "reward_diff": -diff, "reward_diff_ci95": [-diff - half, -diff + half]}

    assert pooled_seed_lines({"grpo": seed(0.01, 0.02)}) == []
    lines = pooled_seed_lines({"s0": seed(0.01, 0.0196), "s1": seed(0.03, 0.0196), "s2": seed(0.02, 0.0196)})
    # mean 0.02; se_i = 0.01, pooled se = sqrt(3) * 0.01 / 3 = 0.00577 -> CI half-width 0.0113
    expected = next(line for line in lines if "expected reward" in line)
    assert "difference +0.0200 [+0.0087, +0.0313]" in expected and "3 of 3 seeds above zero" in expected
    greedy = next(line for line in lines if "greedy" in line)
    assert "difference -0.0200" in greedy and "0 of 3 seeds above zero" in greedy
    # a seed without sampled figures: the sampled line is left out, not computed from the others
    greedy_only = {"reward_diff": 0.0, "reward_diff_ci95": [0, 0]}
    partial = pooled_seed_lines({"s0": seed(0.01, 0.02), "s1": greedy_only})
    assert not any("expected reward" in line for line in partial)
    assert any("greedy" in line for line in partial)


def test_examples_section_shows_both_summaries_and_scores(sample_dir, tiny_cross_encoder_dir):
    from relsum.data.golden import load_golden
    from relsum.evaluation.examples import examples_section
    from relsum.scoring.config import ScorerConfig
    from relsum.scoring.scorer import Scorer

    golden = load_golden(sample_dir / "golden")
    ids = golden.judgments["product_id"].unique()
    before = pd.Series("colour: black", index=ids)
    after = pd.Series([f"size {i} cm" for i in range(len(ids))], index=ids)
    scorer = Scorer(tiny_cross_encoder_dir, ScorerConfig(store=False))
    text = examples_section(golden, {"sum_ref": before, "grpo": after}, scorer, ("sum_ref", "grpo"),
                            n_queries=2, per_query=3, seed=1)
    assert text.count("**Query ") == 2 and text.count("| sum_ref summary | score | grpo summary |") == 2
    rows = [line for line in text.splitlines() if line.startswith("| ") and "colour: black" in line]
    assert 2 <= len(rows) <= 6 and all("size " in r and r.count("|") == 8 for r in rows)
    assert text == examples_section(golden, {"sum_ref": before, "grpo": after}, scorer, ("sum_ref", "grpo"),
                                    n_queries=2, per_query=3, seed=1)  # seeded


def test_label_shifts_group_proxy_labels_with_the_nearest_grade():
    """Proxy labels (r(q,[t;d]), continuous) join the nearest of 0 / 0.5 / 1 instead of one row per value."""
    from relsum.training.policy_eval import label_shifts

    pairs = pd.DataFrame({"product_id": list("abcdef"), "label": [0.0, 0.12, 0.3, 0.5, 0.8, 1.0]})
    ref = np.full(6, 0.5)
    rows = label_shifts(pairs, ref, ref + 0.1, n_boot=20)
    assert [(r["label"], r["pairs"]) for r in rows] == [(0.0, 2), (0.5, 2), (1.0, 2)]


def test_demo_size_cuts_an_fp32_policy_run_only_where_asked(tmp_path):
    from relsum.core.config import load_config
    from relsum.pipelines.configs import DemoConfig
    from relsum.pipelines.demo_report import apply_demo_size, policy_runs_fp32

    config = DemoConfig()  # smollm2, 12 updates, 16 held-out products, 160 golden products
    configured = (config.train.trainer.grpo.max_steps, config.train.max_heldout_products,
                  config.golden_products)
    assert apply_demo_size(config, fp32_policy=False) == ""  # auto on a bf16 policy: as configured
    assert (config.train.trainer.grpo.max_steps, config.train.max_heldout_products,
            config.golden_products) == configured
    note = apply_demo_size(config, fp32_policy=True)
    small = config.fp32_size
    assert (config.train.trainer.grpo.max_steps, config.train.max_heldout_products,
            config.golden_products) == (small.max_steps, small.max_heldout_products, small.golden_products)
    assert f"{small.max_steps} GRPO updates (configured {configured[0]})" in note and "fp32" in note
    # never raises a configured size; 0 / -1 (all, epochs decide) count as unlimited and are cut
    config = load_config(DemoConfig, overrides=["size=fp32", "train.trainer.grpo.max_steps=2",
                                                "golden_products=0"])
    note = apply_demo_size(config, fp32_policy=False)
    assert config.train.trainer.grpo.max_steps == 2 and config.golden_products == small.golden_products
    assert "size=fp32" in note
    config = load_config(DemoConfig, overrides=["size=configured"])
    assert apply_demo_size(config, fp32_policy=True) == "" and config.train.trainer.grpo.max_steps == 12
    with pytest.raises(ValueError, match="size must be one of"):
        DemoConfig(size="small")
    # which policies count as fp32: the tiny build never; an explicit dtype as set
    tiny = load_config(DemoConfig, overrides=["train.trainer.policy.model_dir="]).train.trainer.policy
    assert not policy_runs_fp32(tiny)
    pinned = load_config(DemoConfig, overrides=["train.trainer.policy.dtype=fp32"]).train.trainer.policy
    assert policy_runs_fp32(pinned)
    pinned.dtype = "bf16"
    assert not policy_runs_fp32(pinned)


def test_long_profile_keeps_its_sizes_in_bf16_and_takes_its_fp32_sizes_in_fp32():
    from pathlib import Path

    import relsum
    from relsum.core.config import load_config
    from relsum.pipelines.configs import DemoConfig
    from relsum.pipelines.demo_report import apply_demo_size

    path = Path(relsum.__file__).parent / "configs" / "demo_long.yaml"
    config = load_config(DemoConfig, path)
    assert config.train_seeds == [0, 1, 2] and config.train.max_heldout_products == 32
    assert config.train.trainer.policy.model_dir == "smollm2"
    assert apply_demo_size(config, fp32_policy=False) == ""
    assert config.train.trainer.grpo.max_steps == 22 and config.golden_products == 240
    note = apply_demo_size(config, fp32_policy=True)
    assert "16 GRPO updates (configured 22)" in note
    assert (config.train.trainer.grpo.max_steps, config.train.max_heldout_products,
            config.golden_products) == (16, 24, 200)
    assert config.train_seeds == [0, 1, 2]  # the seeds are what the long run is for: never cut
    forced = load_config(DemoConfig, path, overrides=["size=configured"])
    assert apply_demo_size(forced, fp32_policy=True) == ""
    assert forced.train.trainer.grpo.max_steps == 22


def test_demo_trains_with_the_grounding_guard_and_dpo_names_the_key_to_drop_it():
    from relsum.core.config import load_config
    from relsum.pipelines.configs import DemoConfig

    assert DemoConfig().train.trainer.options.grounding_weight == 0.5
    with pytest.raises(ValueError, match=r"algo=dpo set options\.grounding_weight=0\.0"):
        load_config(DemoConfig, overrides=["train.trainer.algo=dpo"])
    dpo = load_config(DemoConfig, overrides=["train.trainer.algo=dpo",
                                             "train.trainer.options.grounding_weight=0"])
    assert dpo.train.trainer.algo == "dpo"


def test_demo_grpo_update_recomputes_activations_on_the_cpu(tmp_path):
    """The demo's GRPO update peaked at 8.4 GB with every activation kept (docs/memory.md): its TRL config
    asks for activation checkpointing even on the CPU, where the library default leaves it off."""
    import warnings

    from relsum.pipelines.configs import DemoConfig
    from relsum.training.config import TrainConfig

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        demo = DemoConfig().train.trainer.grpo.to_grpo_config(str(tmp_path / "demo"))
        plain = TrainConfig().grpo.to_grpo_config(str(tmp_path / "plain"))
    assert demo.activation_checkpointing and demo.use_cpu
    assert not plain.activation_checkpointing
