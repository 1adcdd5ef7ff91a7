import pytest

from relsum.core.errors import InputError
from relsum.metrics import names
from relsum.pipelines.train import label_shift_metrics


def test_eval_keys_follow_the_registry_scheme():
    assert names.eval_key("full", "ndcg@5") == "eval.full.ndcg@5"
    assert names.eval_key("tail", "r@90p", "lo",
                          gain=True) == "eval.tail.r@90p.gain_pct.lo"
    assert names.eval_key("tail", "ndcg@5", "hi",
                          candidate="sum_ref") == "baseline.sum_ref.tail.ndcg@5.hi"
    assert names.n_queries_key("full") == "eval.full.n_queries"
    assert names.groundedness_key("grpo", "numbers") == "groundedness.grpo.numbers"
    assert names.ablation_key("paper_gated", "r@90p") == "paper_gated.full.r@90p"


def test_unknown_parts_are_refused_not_glued():
    for bad in (lambda: names.eval_key("head", "ndcg@5"), lambda: names.eval_key("full", "ndcg"),
                lambda: names.eval_key("full", "ndcg@5", "mid"), lambda: names.eval_key("full", "ndcg_at_k"),
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


@pytest.mark.parametrize(("measure", "params", "name"), [
    ("ndcg", {"k": 5}, "ndcg@5"), ("ndcg", {"k": 10}, "ndcg@10"), ("r", {"min_precision": 0.9}, "r@90p"),
    ("r", {"min_precision": 0.925}, "r@92.5p"), ("r", {"min_precision": 1.0}, "r@100p"),
    ("r", {"min_precision": 0.07}, "r@7p")])
def test_metric_names_carry_their_cutoff_and_round_trip(measure, params, name):
    assert names.metric_name(measure, **params) == name
    assert names.parse_metric_name(name) == (measure, params)
    assert names.ranking_metrics(k=10, min_precision=0.95) == ("r@95p", "ndcg@10")
    assert names.metric_label("ndcg@5") == "NDCG@5" and names.metric_label("r@90p") == "R@90P"


@pytest.mark.parametrize("bad", ["ndcg_at_k", "ndcg@0", "ndcg@05", "ndcg@", "NDCG@5", "r@90", "r@120p",
                                 "r@0p", "ndcg@5.lo", "recall_at_precision", ""])
def test_malformed_metric_names_are_refused_in_one_line(bad):
    with pytest.raises(InputError, match="malformed metric name") as info:
        names.parse_metric_name(bad)
    assert "\n" not in str(info.value) and "ndcg@<k>" in str(info.value)
    assert not names.is_ranking_metric(bad)


def test_settings_a_name_cannot_spell_are_refused():
    for bad in (lambda: names.metric_name("ndcg", k=0), lambda: names.metric_name("ndcg", k=5.0),
                lambda: names.metric_name("r", min_precision=0.0), lambda: names.metric_name("map", k=5),
                lambda: names.metric_name("r", min_precision=0.123456789)):
        with pytest.raises(ValueError):
            bad()


def test_mlflow_keys_spell_the_at_sign_and_read_back():
    from mlflow.utils.validation import _validate_metric_name

    key = names.eval_key("full", "r@92.5p", "lo", candidate="sum_ref")
    stored = names.mlflow_key(key)
    assert stored == "baseline.sum_ref.full.r_at_92.5p.lo" and names.from_mlflow_key(stored) == key
    _validate_metric_name(stored)  # MLflow accepts it (it refuses the '@')
    with pytest.raises(Exception, match="Names may only contain"):
        _validate_metric_name(key)
    run_keys = ["eval.full.ndcg_at_10", "eval.full.ndcg_at_10.lo", "eval.tail.r_at_90p",
                "eval.full.n_queries", "eval.full.ndcg_at_10.gain_pct", "baseline.none.full.ndcg_at_5",
                "eval.full.ndcg_at_k"]
    assert names.eval_metric_names(run_keys) == ("r@90p", "ndcg@10")
    assert names.eval_metric_names(run_keys, candidate="none") == ("ndcg@5",)


def test_mixed_cutoffs_are_refused_and_unevaluated_runs_ignored():
    names.check_same_cutoffs({"a": ["ndcg@5", "r@90p"], "b": ["r@90p", "ndcg@5"], "c": []}, "compare")
    with pytest.raises(InputError, match="cannot compare these runs: .*a: ndcg@5, r@90p; b: ndcg@10, r@90p"):
        names.check_same_cutoffs({"a": ["ndcg@5", "r@90p"], "b": ["ndcg@10", "r@90p"]}, "compare these runs")
