import pytest

from relsum.metrics import names
from relsum.pipelines.train import label_shift_metrics


def test_eval_keys_follow_the_registry_scheme():
    assert names.eval_key("full", "ndcg_at_k") == "eval.full.ndcg_at_k"
    assert names.eval_key("tail", "recall_at_precision", "lo",
                          gain=True) == "eval.tail.recall_at_precision.gain_pct.lo"
    assert names.eval_key("tail", "ndcg_at_k", "hi",
                          candidate="sum_ref") == "baseline.sum_ref.tail.ndcg_at_k.hi"
    assert names.n_queries_key("full") == "eval.full.n_queries"
    assert names.groundedness_key("grpo", "numbers") == "groundedness.grpo.numbers"
    assert names.ablation_key("paper_gated", "recall_at_precision") == "paper_gated.full_r90p"


def test_unknown_parts_are_refused_not_glued():
    for bad in (lambda: names.eval_key("head", "ndcg_at_k"), lambda: names.eval_key("full", "ndcg"),
                lambda: names.eval_key("full", "ndcg_at_k", "mid"),
                lambda: names.heldout_metric("reward", "mid")):
        with pytest.raises(ValueError):
            bad()


def test_heldout_keys_match_what_train_logs():
    assert names.heldout_key("reward_diff", sampled=True, ci=True) == "sampled_reward_diff_ci95"
    assert names.heldout_metric(names.heldout_key("reward_diff", True),
                                "low") == "heldout_sampled_reward_diff_ci_low"
    row = {"label": 1.0, "shift": 0.1, "shift_ci95": [0.0, 0.2], "score_reference": 0.4, "score_trained": 0.5}
    flat = label_shift_metrics({"label_shifts": [row], "sampled_label_shifts": [dict(row, label=0.5)]})
    assert flat["heldout_label_1_shift_ci_high"] == 0.2
    assert flat["heldout_sampled_label_0.5_score_trained"] == 0.5
    assert len(flat) == 10
