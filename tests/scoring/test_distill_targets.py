"""distill-v2: each document view gets the teacher's estimate from that view, and the calibration is fitted on
train queries the student never trained on (tiny local models, tiny data)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from relsum.scoring.config import RewardModelConfig
from relsum.scoring.distill import Teacher, distill_examples
from relsum.scoring.reward_model import train_model
from relsum.scoring.reward_train import calibration_split

WORDS = ["cable", "laptop", "monitor", "headphones", "printer", "camera", "router", "keyboard"]


def _catalog() -> pd.DataFrame:
    """Titles that say little, texts that say what the product is: the two views disagree."""
    return pd.DataFrame([{"product_id": f"p{i}", "title": f"Acme item {i}",
                          "text": f"A {w} for the office | colour: black | weight: {i} kg"}
                         for i, w in enumerate(WORDS * 2)])


def _judged(catalog: pd.DataFrame, queries: list[int]) -> pd.DataFrame:
    rows = []
    for q in queries:
        word = WORDS[q % len(WORDS)]
        for _, p in catalog.iterrows():
            relevant = word in p["text"]
            if relevant or int(p["product_id"][1:]) % 5 == q % 5:
                rows.append({"query_id": f"q{q}", "query": f"{word} {q}", "product_id": p["product_id"],
                             "title": p["title"], "text": p["text"], "label": 1.0 if relevant else 0.0})
    return pd.DataFrame(rows)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


@pytest.fixture(scope="module")
def teacher(tiny_cross_encoder_dir):
    return Teacher(tiny_cross_encoder_dir, _catalog(), lead_n=6, max_length=64)


def _examples(teacher, **kw):
    catalog = _catalog()
    judged = _judged(catalog, [0, 1, 2, 3])
    args = dict(hard_k=4, random_k=2, title_only=True, seed=0)
    return judged, *distill_examples(judged, judged[["query_id", "query"]].drop_duplicates(),
                                     judged[["query_id", "product_id"]], catalog, teacher, **{**args, **kw})


def test_each_view_gets_the_teachers_estimate_from_that_view(teacher):
    judged, out, summary = _examples(teacher, view_targets=True, judged_title_weight=0.25, text_view="lead")
    assert set(summary["target_maps"]) == {"lead", "title"} and summary["n_pseudo_pairs"] > 0
    text, title = out[out["view"] == "text"], out[out["view"] == "title"]
    assert len(text) == len(title) == summary["n_judged_pairs"] + summary["n_pseudo_pairs"]
    # the text view of a judged pair is its human label; every text document is the teacher's lead view
    assert np.array_equal(text.loc[text["judged"], "target"].to_numpy(), judged["label"].to_numpy())
    assert all(doc.startswith("Acme item") and doc.count(" ") <= 2 + 6 + 2 for doc in text["doc"])
    # the title-only view of a pseudo pair: the teacher's title-only cosine through the title map
    pseudo = title[~title["judged"]].merge(_catalog(), left_on="doc", right_on="title")
    a, b = summary["target_maps"]["title"]
    cos = teacher.cosine(pseudo["query"].tolist(), pseudo["product_id"].tolist(), view="title")
    assert np.allclose(pseudo["target"], _sigmoid(a * cos + b), atol=1e-3)
    # the two views of the same pair get different targets where the teacher's cosines differ
    pairs = text.reset_index(drop=True).join(title.reset_index(drop=True), rsuffix="_title")
    assert (pairs["target"] - pairs["target_title"]).abs().max() > 0.05
    # judged title-only view: 0.25 * label + 0.75 * the teacher's title-only estimate
    jt = title[title["judged"]].reset_index(drop=True)
    cos = teacher.cosine(judged["query"].tolist(), judged["product_id"].tolist(), view="title")
    assert np.allclose(jt["target"], 0.25 * judged["label"] + 0.75 * _sigmoid(a * cos + b), atol=1e-3)


def test_shared_targets_reproduce_distill_v1(teacher):
    _, out, summary = _examples(teacher, view_targets=False, text_view="full")
    text, title = out[out["view"] == "text"], out[out["view"] == "title"]
    assert np.array_equal(text["target"].to_numpy(), title["target"].to_numpy())
    assert set(summary["target_maps"]) == {"lead"}
    assert any(" kg" in doc for doc in text["doc"])  # the whole text, cut later by the token budget


def test_calibration_split_holds_out_whole_queries_or_falls_back(caplog):
    judged = _judged(_catalog(), list(range(10)))
    log = judged[["query_id", "query", "product_id"]]
    kept, kept_log, held = calibration_split(judged, log, 0.2, seed=0, min_pairs=1)
    assert held["query_id"].nunique() == 2 and len(kept) + len(held) == len(judged)
    assert not set(kept["query_id"]) & set(held["query_id"])
    assert not set(kept_log["query_id"]) & set(held["query_id"])  # its search-log rows leave too
    with caplog.at_level(logging.WARNING):
        same, _, none = calibration_split(judged, log, 0.2, seed=0, min_pairs=len(judged))
    assert none is None and len(same) == len(judged) and "fitting it on the training pairs" in caplog.text
    assert calibration_split(judged, log, 0.0, seed=0)[2] is None


def test_calibration_never_fits_on_a_pair_its_model_trained_on(tiny_cross_encoder_dir, teacher):
    catalog = _catalog()
    train = _judged(catalog, list(range(8)))
    logged = train[["query_id", "query", "product_id"]]
    tiny = str(tiny_cross_encoder_dir)
    config = RewardModelConfig(base_model=tiny, teacher_model=tiny, max_length=32, eval_max_length=48,
                               batch_size=16, learning_rate=1e-3, epochs=1, hard_negatives=3,
                               random_negatives=1, bf16="off", teacher_lead_words=6,
                               calibration_holdout=0.25, calibration_min_pairs=1)
    model, _, info = train_model(train, config, catalog, logged, teacher)
    calibrated, student = set(info["calibration_query_ids"]), set(info["student_query_ids"])
    assert len(calibrated) == 2 and not calibrated & student
    assert calibrated | student == set(train["query_id"]) == set(info["train_query_ids"])
    n_held = int(train["query_id"].isin(calibrated).sum())
    assert info["n_judged_pairs"] == len(train) - n_held
    assert info["calibration_pairs"] == 2 * n_held  # title + text and title + lead of each held-out pair
    assert len(info["calibration"]) == 2 and model.config.num_labels == 1


def test_new_config_checks():
    with pytest.raises(ValueError, match="calibration_holdout"):
        RewardModelConfig(calibration_holdout=1.0)
    with pytest.raises(ValueError, match="judged_title_weight"):
        RewardModelConfig(judged_title_weight=1.5)
    with pytest.raises(ValueError, match="text_view"):
        RewardModelConfig(text_view="summary")


def test_balanced_calibration_does_not_follow_the_base_rate():
    """Fitted on queries with few relevant pairs, the plain L1 map sinks relevant scores (it is a threshold
    set by the base rate); the balanced fit keeps them above 0.5, and both classes weigh half each."""
    from relsum.scoring.reward_train import balance_weights, fit_calibration

    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(20), np.zeros(80)]
    logits = np.r_[rng.normal(1.0, 1.5, 20), rng.normal(-1.0, 1.5, 80)]
    weights = balance_weights(labels)
    assert weights.sum() == pytest.approx(100) and weights[labels == 1].sum() == pytest.approx(50)
    assert np.array_equal(balance_weights(np.ones(5)), np.ones(5))

    def mean_relevant_score(a, b):
        return float(np.mean(1 / (1 + np.exp(-(a * logits[labels == 1] + b)))))

    plain, balanced = fit_calibration(logits, labels), fit_calibration(logits, labels, balance=True)
    assert mean_relevant_score(*plain) < 0.5 < mean_relevant_score(*balanced)


def test_judged_finish_trains_on_the_judged_examples_alone(tiny_cross_encoder_dir, teacher):
    """judged_finish_epochs adds passes over the judged examples only (both views) after distillation."""
    catalog = _catalog()
    train = _judged(catalog, list(range(8)))
    tiny = str(tiny_cross_encoder_dir)
    base = dict(base_model=tiny, teacher_model=tiny, max_length=32, eval_max_length=48, batch_size=16,
                learning_rate=1e-3, epochs=1, hard_negatives=3, random_negatives=1, bf16="off",
                teacher_lead_words=6, calibrate=False)
    logged = train[["query_id", "query", "product_id"]]
    _, _, plain = train_model(train, RewardModelConfig(**base), catalog, logged, teacher)
    _, _, finished = train_model(train, RewardModelConfig(**base, judged_finish_epochs=2), catalog, logged,
                                 teacher)
    judged_examples = 2 * len(train)  # a title + text and a title-only example per judged pair
    assert finished["steps"] == plain["steps"] + 2 * -(-judged_examples // 16)
    assert "finish_loss" in finished and "finish_loss" not in plain
    with pytest.raises(ValueError, match="judged_finish_epochs"):
        RewardModelConfig(judged_finish_epochs=-1)


def test_view_pairs_link_each_judged_text_row_to_its_title_row(teacher):
    judged, examples, _ = _examples(teacher, view_targets=True, judged_title_weight=0.5)
    from relsum.scoring.reward_train import view_pairs

    partner, direction = view_pairs(examples)
    linked = np.flatnonzero(partner >= 0)
    assert len(linked) == len(judged)  # every judged pair has label 0 or 1 and a title row here
    for i in linked:
        j = partner[i]
        assert examples["view"].iat[i] == "text" and examples["judged"].iat[i]
        assert examples["view"].iat[j] == "title" and examples["pair"].iat[j] == examples["pair"].iat[i]
        assert examples["query"].iat[j] == examples["query"].iat[i]
        assert direction[i] == (1.0 if examples["target"].iat[i] == 1.0 else -1.0)
    assert not direction[partner < 0].any()


def test_view_consistency_moves_text_scores_toward_the_label(tiny_cross_encoder_dir, teacher):
    """With the pairwise term the text view's logit moves toward the label relative to the title view's."""
    from transformers import AutoTokenizer

    from relsum.scoring.reward_train import fit, load_student, predict_logits, view_pairs

    _, examples, _ = _examples(teacher, view_targets=True, judged_title_weight=0.5)
    partner, direction = view_pairs(examples)
    linked = np.flatnonzero(partner >= 0)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_cross_encoder_dir))
    q, d = examples["query"].tolist(), examples["doc"].tolist()

    def mean_margin(weight: float) -> float:
        model = load_student(tiny_cross_encoder_dir, seed=0)
        fit(model, tokenizer, q, d, examples["target"].to_numpy(float), epochs=3, batch_size=16,
            learning_rate=1e-3, warmup_ratio=0.1, max_length=32, bf16=False, seed=0,
            consistency=(partner, direction), consistency_weight=weight)
        z = predict_logits(model, tokenizer, q, d, 32)
        return float(np.mean(direction[linked] * (z[linked] - z[partner[linked]])))

    assert mean_margin(5.0) > mean_margin(0.0)
    with pytest.raises(ValueError, match="view_consistency"):
        RewardModelConfig(view_consistency=-1)
