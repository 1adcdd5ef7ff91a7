"""The tiny default policy and policy loading."""

from __future__ import annotations

import json
import re

import pytest

from relsum.training.generate import generate_summaries
from relsum.training.policy import load_policy, lora_config
from relsum.training.tiny_policy import pseudo_items, pseudo_summary

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
    assert sum(("," in o or ":" in o) for o in outs) >= len(outs) // 2  # attribute-list shape


def test_refuses_hub_ids_and_missing_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="hub ids"):
        load_policy("mistralai/Mistral-7B-Instruct-v0.3")
    with pytest.raises(FileNotFoundError, match="not a local folder"):
        load_policy(tmp_path / "nope")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(FileNotFoundError):
        load_policy(tmp_path / "f.txt")


def test_lora_config_paper_values():
    from relsum.training.config import PolicyConfig

    lc = lora_config(PolicyConfig())
    assert (lc.r, lc.lora_alpha, lc.lora_dropout, lc.target_modules) == (32, 32, 0.05, "all-linear")
    assert str(lc.task_type.value if hasattr(lc.task_type, "value") else lc.task_type) == "CAUSAL_LM"
    lc = lora_config(PolicyConfig(target_modules=["q_proj", "v_proj"]))
    assert set(lc.target_modules) == {"q_proj", "v_proj"}
