"""Cross-rollout disagreement weights: gradient moves to the tokens where a group's rollouts fork."""

from __future__ import annotations

import pytest
import torch

from relsum.training.credit import cross_rollout_disagreement, variance_token_weights

# One group of G=4 rollouts over 4 positions (0 = padding after EOS, masked):
#   all agree at t0; at t1 they split 2-2 (5,5 | 6,6); at t2 the first pair agrees, the second pair splits;
#   rollout 0 stops after t2 (EOS = 9 at t2), rollout 1 runs on alone.
IDS = torch.tensor([[1, 5, 9, 0], [1, 5, 7, 8], [1, 6, 3, 4], [1, 6, 2, 4]])
MASK = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]])


def test_disagreement_marks_the_forks():
    d = cross_rollout_disagreement(IDS, MASK, 4)
    norm = 1 - 1 / 4
    assert d[:, 0].tolist() == [0.0] * 4  # everyone agrees on the first token
    assert d[:, 1] == pytest.approx(torch.full((4,), 0.5 / norm))  # 2-2 split among 4 peers
    assert d[:, 2] == pytest.approx(torch.full((4,), 0.5 / 0.75))  # each pair splits 1-1 (impurity 0.5)
    assert d[:, 3].tolist() == [0.0] * 4  # no peers left (or masked): nothing to compare


def test_weights_move_gradient_to_forking_tokens():
    d = cross_rollout_disagreement(IDS, MASK, 4)
    uniform = variance_token_weights(d, MASK, 0.0)
    assert torch.equal(uniform, MASK.float())
    w = variance_token_weights(d, MASK, 1.0)
    assert w[:, 0].tolist() == [0.0] * 4 and (w[:, 1] > 0).all() and w[1, 3] == 0 and w[0, 3] == 0
    half = variance_token_weights(d, MASK, 0.5)
    assert (half[:, 1] > half[:, 0]).all() and (half[:, 0] > 0).all()
    for weights in (w, half):  # per completion, the total credit is unchanged (masked mean 1)
        assert ((weights * MASK).sum(-1) / MASK.sum(-1)) == pytest.approx(torch.ones(4))
    # per-token advantage = sequence advantage x weight: the sign is kept, the zero-fork tokens get nothing
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5]).unsqueeze(1) * w
    assert (adv[:, 0] == 0).all() and (adv[:, 1].sign() == torch.tensor([1.0, -1.0, 1.0, -1.0])).all()


def test_identical_rollouts_keep_uniform_weights():
    ids = torch.tensor([[1, 2, 3]] * 2 + [[4, 5, 6], [4, 5, 7]])
    mask = torch.ones_like(ids)
    d = cross_rollout_disagreement(ids, mask, 2)
    assert d[:2].sum() == 0 and torch.equal(variance_token_weights(d, mask, 1.0)[:2], torch.ones(2, 3))
    assert d[2:, 2].tolist() == [1.0, 1.0] and d[2:, :2].sum() == 0  # groups are separate blocks of G


def test_bad_shapes_are_errors():
    with pytest.raises(ValueError, match="groups"):
        cross_rollout_disagreement(IDS[:3], MASK[:3], 2)
    with pytest.raises(ValueError, match="alpha"):
        variance_token_weights(torch.zeros(2, 2), torch.ones(2, 2), 1.5)
