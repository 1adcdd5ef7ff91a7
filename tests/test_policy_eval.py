"""Held-out comparison of two policies: greedy and sampled rewards from the one scorer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from relsum.training.policy_eval import compare_policies, expected_pair_rewards, pair_rewards, sample_products


@pytest.fixture(scope="module")
def scorer(tiny_cross_encoder_dir):
    from relsum.scoring.config import ScorerConfig
    from relsum.scoring.scorer import Scorer

    return Scorer(tiny_cross_encoder_dir, ScorerConfig(store=False))


@pytest.fixture(scope="module")
def heldout(catalog) -> pd.DataFrame:
    products = catalog.iloc[300:306]
    rows = [(q, p, t, x, lab) for q, lab in (("black headphones", 1.0), ("usb cable", 0.0))
            for p, t, x in zip(products["product_id"], products["title"], products["text"], strict=True)]
    return pd.DataFrame(rows, columns=["query", "product_id", "title", "text", "label"])


def test_expected_reward_is_the_mean_over_samples(heldout, scorer):
    ids = heldout["product_id"].unique()
    a = pd.Series([f"colour black, weight {i}" for i in range(len(ids))], index=ids)
    b = pd.Series(["usb cable" for _ in ids], index=ids)
    np.testing.assert_allclose(expected_pair_rewards(heldout, [a, a], scorer),
                               pair_rewards(heldout, a, scorer),
                               atol=1e-6)
    both = (pair_rewards(heldout, a, scorer) + pair_rewards(heldout, b, scorer)) / 2
    np.testing.assert_allclose(expected_pair_rewards(heldout, [a, b], scorer), both, atol=1e-6)


def test_compare_policies_reports_greedy_and_sampled(heldout, scorer, tiny_policy_dir):
    from relsum.policy.config import PolicyConfig
    from relsum.policy.load import load_policy

    model, tok = load_policy(tiny_policy_dir)
    products = heldout.drop_duplicates("product_id")[["product_id", "title", "text"]]
    policy = PolicyConfig(max_prompt_tokens=128, max_summary_tokens=12)
    samples = sample_products(model, tok, products, policy, k=3, temperature=0.9, seed=0)
    assert len(samples) == 3 and all(list(s.index) == list(products["product_id"]) for s in samples)
    assert [list(s) for s in samples] == [list(s)
                                          for s in sample_products(model, tok, products, policy, 3, 0.9)]
    assert len({tuple(s) for s in samples}) > 1  # three draws, not one draw thrice
    greedy = pd.Series("", index=products["product_id"].to_numpy())
    out = compare_policies(heldout, greedy, greedy, scorer, n_boot=50, reference_samples=samples,
                           trained_samples=samples)
    assert out["reward_diff"] == 0.0 and out["sampled_k"] == 3
    assert out["sampled_reward_diff"] == pytest.approx(0.0)
    lo, hi = out["sampled_reward_diff_ci95"]
    assert lo <= 0.0 <= hi
    assert out["sampled_reward_reference"] == pytest.approx(
        expected_pair_rewards(heldout, samples, scorer).mean())
    with pytest.raises(ValueError, match="same number"):
        compare_policies(heldout, greedy, greedy, scorer, reference_samples=samples,
                         trained_samples=samples[:2])


def test_groundedness_shift_counts_invented_tokens_per_product(heldout):
    from relsum.training.policy_eval import groundedness_shift

    products = heldout.drop_duplicates("product_id")
    copied = pd.Series(products["title"].to_numpy(), index=products["product_id"].to_numpy())
    invented = pd.Series("zxqv frobnicator", index=products["product_id"].to_numpy())
    out = groundedness_shift(heldout, copied, invented, n_boot=50)
    assert out["groundedness_reference"] == pytest.approx(1.0)
    assert out["groundedness_trained"] == pytest.approx(0.0)
    assert out["groundedness_diff"] == pytest.approx(-1.0)
    assert out["groundedness_diff_ci95"] == pytest.approx([-1.0, -1.0])
    assert groundedness_shift(heldout, copied, copied)["groundedness_diff"] == 0.0
