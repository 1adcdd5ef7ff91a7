"""The reward equals -|r(q, [t; s]) - l| computed with the real Scorer."""

from __future__ import annotations

import numpy as np
import pytest

from relsum.policy.reward import RelevanceReward


def test_reward_matches_hand_computation(scorer):
    reward = RelevanceReward(scorer)
    assert reward.__name__ == "relevance"
    queries, titles = ["black mug", "usb cable", "black mug"], ["Acme Mug", "Cable 2m", "Acme Mug"]
    completions = [" colour: black, 350 ml\nignored", "", " material: ceramic"]
    labels = [1.0, 0.0, 0.3]
    got = reward(prompts=["p"] * 3, completions=completions, query=queries, title=titles, label=labels,
                 product_id=["a", "b", "a"], trainer_state=None)
    r = scorer.score(queries, titles, ["colour: black, 350 ml", None, "material: ceramic"])
    assert np.allclose(got, -np.abs(r.astype(np.float64) - np.array(labels)), atol=1e-7)
    assert all(-1.0 <= g <= 0.0 for g in got)
    assert reward.calls == 1 and reward.rows == 3 and reward.total_seconds > 0


def test_chat_completions(scorer):
    reward = RelevanceReward(scorer)
    chat = [[{"role": "assistant", "content": "colour: black"}]]
    plain = reward(prompts=None, completions=[" colour: black"], query=["q"], title=["t"], label=[0.5])
    assert reward(prompts=None, completions=chat, query=["q"], title=["t"], label=[0.5]) == plain


def test_bad_labels(scorer):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        RelevanceReward(scorer)(completions=["a"], query=["q"], title=["t"], label=[1.5])
