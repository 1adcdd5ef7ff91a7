"""Token-level credit from cross-rollout disagreement (DRO-style), as a minimal GRPOTrainer hook.

Why: GRPO gives every token of a completion the same advantage, yet most tokens are forced by
their prefix; the learning signal sits where the group's rollouts *disagree* ("forking" points).

Statistic: the G rollouts of a prompt form a prefix tree. At position t, rollout i sits at the node
shared with every rollout of its group that generated the same tokens [0, t) and is still running
(completion mask 1; TRL's mask includes the EOS token, so a rollout that stopped earlier has already
diverged). Its disagreement ``d[i, t]`` is the Gini impurity ``1 - sum_k p_k**2`` of the tokens
those peers chose at t, divided by ``1 - 1/G`` (a G-way split = 1). It is 0 wherever all peers
agree and also after i has split off alone (no peers, nothing to compare with).

Weights: ``w = (1 - alpha) + alpha * d``, rescaled per completion so the masked mean is 1 (the
completion's total credit, hence GRPO's per-sequence loss scale, is unchanged; only its spread over
tokens moves). A completion whose disagreement is 0 everywhere keeps uniform weights.

Hook: TRL 1.16's ``_compute_loss`` accepts per-token advantages of shape (B, T) ("to support
subclasses", it only unsqueezes 1-D advantages), and ``_generate_and_score_completions`` returns the
whole generation batch with groups as contiguous blocks of ``num_generations`` before TRL shuffles
and splits it. So :class:`CreditGRPOTrainer` overrides only that method: call TRL, then multiply the
(B,) advantages by the (B, T) weights. Nothing else in TRL changes; the PPO clip still sees the sign
of the advantage because the weights are >= 0. Sequence-level importance sampling and the liger loss
expect (B,) advantages and are refused.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

logger = logging.getLogger(__name__)


def cross_rollout_disagreement(completion_ids: torch.Tensor, completion_mask: torch.Tensor,
                               num_generations: int) -> torch.Tensor:
    """(B, T) disagreement in [0, 1] (see module docstring); groups are contiguous blocks of G rows."""
    if completion_ids.shape != completion_mask.shape or completion_ids.dim() != 2:
        raise ValueError("completion_ids and completion_mask must both be (B, T)")
    b, t_len = completion_ids.shape
    g = num_generations
    if g < 2 or b % g:
        raise ValueError(f"batch of {b} completions does not split into groups of {g}")
    ids = completion_ids.view(b // g, g, t_len)
    alive = completion_mask.view(b // g, g, t_len).bool()
    same_prefix = torch.ones(b // g, g, g, dtype=torch.bool, device=completion_ids.device)
    out = torch.zeros(b // g, g, t_len, dtype=torch.float32, device=completion_ids.device)
    norm = 1.0 - 1.0 / g
    for t in range(t_len):
        a = alive[:, :, t]
        peers = same_prefix & a[:, None, :] & a[:, :, None]  # [grp, i, j]: j is i's live peer at t
        same_tok = ids[:, :, t, None] == ids[:, None, :, t]  # [grp, i, j]
        n = peers.sum(-1).clamp(min=1).float()
        # sum_k p_k^2 over the peers' token distribution = mean over peers j of P(token == token_j)
        share = (peers & same_tok).sum(-1).float() / n  # p of i's own token among i's peers, per i
        p_sq = (peers.float() * share[:, None, :]).sum(-1) / n  # mean over peers j of p(token_j)
        out[:, :, t] = torch.where(a, (1.0 - p_sq) / norm, torch.zeros_like(p_sq))
        same_prefix = same_prefix & same_tok & a[:, None, :] & a[:, :, None]
    return out.view(b, t_len).clamp(0.0, 1.0)


def variance_token_weights(disagreement: torch.Tensor, completion_mask: torch.Tensor,
                           alpha: float) -> torch.Tensor:
    """(B, T) weights ``(1 - alpha) + alpha * d``, masked, rescaled so each row's masked mean is 1."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError("alpha must be in [0, 1]")
    mask = completion_mask.float()
    raw = ((1.0 - alpha) + alpha * disagreement) * mask
    total = raw.sum(-1, keepdim=True)
    count = mask.sum(-1, keepdim=True)
    uniform = mask
    scaled = raw * count / total.clamp(min=1e-12)
    return torch.where(total > 1e-12, scaled, uniform)


def _make_class() -> type:
    from trl import GRPOTrainer

    class CreditGRPOTrainer(GRPOTrainer):
        """GRPOTrainer whose training advantages become per-token: advantage x cross-rollout weight."""

        def __init__(self, *args: Any, credit_alpha: float = 0.5, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if (self.args.importance_sampling_level != "token"
                    or getattr(self.args, "use_liger_kernel", False)):
                raise ValueError("variance_credit needs token-level importance sampling and no liger loss")
            self.credit_alpha = float(credit_alpha)

        def _generate_and_score_completions(self, inputs: Any) -> dict[str, Any]:
            out = super()._generate_and_score_completions(inputs)
            if not self.model.training or self.credit_alpha == 0.0:
                return out
            mask = out["completion_mask"]
            d = cross_rollout_disagreement(out["completion_ids"], mask, self.num_generations)
            w = variance_token_weights(d, mask, self.credit_alpha)
            adv = out["advantages"]
            out["advantages"] = (adv if adv.dim() == 2 else adv.unsqueeze(1)) * w.to(adv.dtype)
            forking = ((d > 0) & mask.bool()).float().sum() / mask.float().sum().clamp(min=1.0)
            self._metrics["train"]["credit/forking_token_frac"].append(forking.item())
            return out

    return CreditGRPOTrainer


_CLASS: type | None = None


def credit_trainer_class() -> type:
    """The :class:`CreditGRPOTrainer` class (built on first use so importing this module needs no TRL)."""
    global _CLASS
    if _CLASS is None:
        _CLASS = _make_class()
    return _CLASS
