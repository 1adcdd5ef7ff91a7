"""The tiny default policy and policy loading."""

from __future__ import annotations

import json
import re

import pytest

from relsum.policy.generate import generate_summaries
from relsum.policy.load import load_policy, lora_config
from relsum.policy.tiny import pseudo_items, pseudo_summary

WORD = re.compile(r"[a-z0-9]+")


def test_pseudo_summary_keeps_what_the_title_lacks():
    items = pseudo_items("Acme Black Mug", "Black mug. Dishwasher safe, holds 350 ml | colour: Black | "
                                           "material: ceramic | capacity: 350 ml")
    assert items == ["Dishwasher safe", "holds 350 ml", "material: ceramic", "capacity: 350 ml"]
    assert pseudo_summary("Acme Black Mug", "colour: black") == ""


def test_tiny_policy_folder(tiny_policy_dir):
    info = json.loads((tiny_policy_dir / "relsum_policy.json").read_text())
    assert info["kind"] == "relsum-tiny-policy" and info["seed"] == 0 and info["warmup"]["steps"] > 0
    assert info["warmup"]["final_loss"] < info["warmup"]["first_loss"]
    assert list(tiny_policy_dir.glob("*.safetensors")) and (tiny_policy_dir / "tokenizer.json").exists()
    assert not list(tiny_policy_dir.glob("*.bin"))


def test_warm_policy_writes_attribute_like_text(tiny_policy_dir, catalog):
    model, tok = load_policy(tiny_policy_dir)
    held = catalog.iloc[300:312]  # not used by the build
    outs = generate_summaries(model, tok, held["title"].tolist(), held["text"].tolist(), max_new_tokens=24)
    assert all(outs)
    fractions = []
    for text, out in zip(held["text"], outs, strict=True):
        words = WORD.findall(out.lower())
        fractions.append(sum(w in set(WORD.findall(text.lower())) for w in words) / max(1, len(words)))
    # The reduced test policy (width 64, 216 warm-up steps) copies ~35-40% of its words from the text;
    # an untrained model copies ~0% (random BPE pieces). The full default build reaches ~0.6.
    assert sum(fractions) / len(fractions) > 0.25
    assert len(set(outs)) >= len(outs) // 2  # it reads its input: not one stock answer for every product


def test_refuses_hub_ids_and_missing_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="hub ids"):
        load_policy("mistralai/Mistral-7B-Instruct-v0.3")
    with pytest.raises(FileNotFoundError, match="not a local folder"):
        load_policy(tmp_path / "nope")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(FileNotFoundError):
        load_policy(tmp_path / "f.txt")


def test_lora_config_paper_values():
    from relsum.policy.config import PolicyConfig

    lc = lora_config(PolicyConfig())
    assert (lc.r, lc.lora_alpha, lc.lora_dropout, lc.target_modules) == (32, 32, 0.05, "all-linear")
    assert str(lc.task_type.value if hasattr(lc.task_type, "value") else lc.task_type) == "CAUSAL_LM"
    lc = lora_config(PolicyConfig(target_modules=["q_proj", "v_proj"]))
    assert set(lc.target_modules) == {"q_proj", "v_proj"}


def test_warm_up_targets_only_what_the_cut_prompt_shows(tiny_policy_dir):
    """A pseudo-summary item hidden by the prompt cap would teach the policy to invent attributes."""
    import pandas as pd

    from relsum.policy.config import TinyPolicyConfig
    from relsum.policy.load import load_tokenizer
    from relsum.policy.tiny import warm_up_examples

    tok = load_tokenizer(tiny_policy_dir)
    attrs = " | ".join(f"feature {name}: value {name}"
                       for name in ("alpha", "bravo", "charlie", "delta", "echo",
                                    "foxtrot", "golf", "hotel", "india", "juliet"))
    catalog = pd.DataFrame({"title": ["Acme Widget"], "text": [attrs]})
    cfg = TinyPolicyConfig(max_prompt_tokens=72, max_summary_tokens=200, variants=3, seed=1)
    examples, empty = warm_up_examples(catalog, tok, cfg)
    assert empty == 0 and len(examples) == 1 + cfg.variants
    prompt = tok.decode(examples[0][0], skip_special_tokens=True)
    assert "alpha" in prompt and "juliet" not in prompt  # the cap cut the text
    in_order = tok.decode(examples[0][1], skip_special_tokens=True).strip().split(", ")
    assert in_order and all(item in prompt for item in in_order)
    for p_ids, c_ids in examples[1:]:
        assert p_ids == examples[0][0]
        items = tok.decode(c_ids, skip_special_tokens=True).strip().split(", ")
        assert set(items) <= set(in_order) and len(set(items)) == len(items)
    assert len({tuple(c) for _, c in examples}) > 1  # the variants are shuffles/subsets, not copies


def test_prompt_cap_follows_the_tiny_warm_up(tiny_policy_dir, tiny_cross_encoder_dir):
    from relsum.policy.load import prompt_cap

    assert prompt_cap(tiny_policy_dir, 384) == 128 and prompt_cap(tiny_policy_dir, 96) == 96
    assert prompt_cap(tiny_cross_encoder_dir, 384) == 384  # not a tiny-policy build: left alone
