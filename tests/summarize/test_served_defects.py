"""Served summaries a person would ship (issue 22 item 5): no prompt echo, boilerplate labels, list numbering,
restated titles or repeated segments; one pure counter of those patterns, carried by the catalog manifest,
the demo and the evaluation report."""

from __future__ import annotations

import json
import random

import pandas as pd
import pytest

from relsum.core.paths import SAMPLE_DIR
from relsum.policy.prompt import INSTRUCTION, SYSTEM_LINE, VARIANTS
from relsum.policy.served import (
    DEFECT_KINDS,
    defect_counts,
    raw_log,
    raw_of,
    served_summary,
    summary_defects,
)

from . import build_random_policy

TITLE = "Bosch Cordless Drill 18V Black"
ONE_LINE_ASK = VARIANTS["one_line"].frame.rsplit("\n", 1)[-1]

# (kind, raw completion, title, served): the patterns counted in the issue, each with its clean-up
CASES = [
    ("boilerplate_label", " Product details: 2 Ah battery, keyless chuck", TITLE,
     "2 Ah battery, keyless chuck"),
    ("boilerplate_label", "Summary: Key facts: 2 Ah battery", TITLE, "2 Ah battery"),
    ("boilerplate_label", "Facts not in the title: 2 Ah battery", TITLE, "2 Ah battery"),
    ("boilerplate_label", "2 Ah battery | Product description: keyless chuck", TITLE,
     "2 Ah battery | keyless chuck"),
    ("title_restatement", "Product title: Bosch Cordless Drill 18V Black\nProduct details: 2 Ah", TITLE, ""),
    ("title_restatement", "Bosch Cordless Drill 18V Black, 2 Ah battery", TITLE, "2 Ah battery"),
    ("title_restatement", "cordless drill 18 V black | 2 Ah battery", TITLE, "2 Ah battery"),  # most words
    ("numbering", "1. 2 Ah battery 2. keyless chuck 3. LED light", TITLE,
     "2 Ah battery, keyless chuck, LED light"),
    ("numbering", "- 2 Ah battery \u2022 keyless chuck", TITLE, "2 Ah battery, keyless chuck"),
    ("repeated_segment", "product material: Polycarbonate | product material: Polycarbonate | colour: clear",
     "Phone Case", "product material: Polycarbonate | colour: clear"),
    ("prompt_echo", " " + ONE_LINE_ASK, TITLE, ""),
    ("prompt_echo", " In one line, list the facts from the details that", TITLE, ""),  # cut by max_new_tokens
    ("prompt_echo", "2 Ah battery. " + ONE_LINE_ASK + " keyless", TITLE, "2 Ah battery."),
    ("prompt_echo", SYSTEM_LINE + " 2 Ah battery", TITLE, "2 Ah battery"),
    ("prompt_echo", INSTRUCTION + " 2 Ah battery", TITLE, "2 Ah battery"),
]
# summaries that must pass unchanged: attribute keys, numbers with dots, a title word among facts
CLEAN = [("colour: red, size: 5 mm", "Shirt"), ("weight 1.5 kg, pack of 2. Red", "Box"),
         ("black, 2 Ah battery", TITLE), ("drill bits, steel", "Drill"),
         ("material: steel | colour: grey", "Bolt")]


@pytest.mark.parametrize(("kind", "raw", "title", "served"), CASES)
def test_each_pattern_is_cleaned_and_counted(kind, raw, title, served):
    assert served_summary(raw, title=title) == served
    raw_counts = summary_defects([raw], [title])
    assert raw_counts[kind] == 1 and raw_counts["n"] == 1, raw_counts
    after = summary_defects([served], [title])
    assert sum(after[k] for k in DEFECT_KINDS if k != "empty") == 0, after
    assert after["empty"] == int(served == "")


@pytest.mark.parametrize(("text", "title"), CLEAN)
def test_clean_summaries_are_served_unchanged_and_count_nothing(text, title):
    assert served_summary(text, title=title) == text
    assert summary_defects([text], [title]) == dict.fromkeys(DEFECT_KINDS, 0) | {"n": 1}


def test_counts_add_up_over_many_and_title_needs_titles():
    raws = [raw for _, raw, _, _ in CASES]
    counts = summary_defects(raws, [t for _, _, t, _ in CASES])
    for kind in DEFECT_KINDS[:-1]:
        assert counts[kind] >= sum(k == kind for k, _, _, _ in CASES), kind
    assert summary_defects(raws)["title_restatement"] == 0  # no titles: not counted
    assert served_summary("Bosch Cordless Drill 18V Black, 2 Ah") == "Bosch Cordless Drill 18V Black, 2 Ah"
    assert summary_defects([None, float("nan"), ""], [TITLE, None, float("nan")])["empty"] == 3
    with pytest.raises(ValueError, match="lengths differ"):
        summary_defects(["a"], [])


def test_served_form_is_idempotent_with_a_title():
    pieces = ["Product details:", " 1.", " 2.", "Summary:", " |", ", ", "Bosch", " Cordless Drill", " 18V",
              " Black", " material: steel", "\n", ONE_LINE_ASK[:40], " \u2022 ", "- ", "Key facts: ", "2 Ah"]
    rng = random.Random(0)
    for _ in range(400):
        raw = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 10)))
        once = served_summary(raw, title=TITLE)
        assert served_summary(once, title=TITLE) == once, raw
        left = summary_defects([once], [TITLE])
        assert sum(left[k] for k in DEFECT_KINDS if k != "empty") == 0, (raw, once, left)


def test_raw_log_recovers_what_the_policy_wrote():
    raws = [raw for _, raw, _, _ in CASES] + [c for c, _ in CLEAN]
    titles = [t for _, _, t, _ in CASES] + [t for _, t in CLEAN]
    with raw_log() as log:
        served = [served_summary(r, title=t) for r, t in zip(raws, titles, strict=True)]
        served = [served_summary(s, max_words=3, title=t) for s, t in zip(served, titles, strict=True)]
    assert served_summary("Summary: x") == "x"  # outside the block: not logged
    assert "x" not in log
    counts = defect_counts(served, titles, log)
    assert counts["raw"] == summary_defects(raws, titles)  # chains (a second, shorter cap) followed
    assert sorted(raw_of(served, log)) == sorted(raws)
    assert set(defect_counts(served, titles)) == {"served"}


def test_reward_scores_the_served_text_so_a_restated_title_earns_nothing(tiny_cross_encoder_dir):
    from relsum.policy.reward import RelevanceReward
    from relsum.scoring.config import ScorerConfig
    from relsum.scoring.scorer import Scorer

    scorer = Scorer(tiny_cross_encoder_dir, ScorerConfig(store=False))
    seen = []

    class Recording:
        fingerprint = scorer.fingerprint

        def score(self, queries, titles, texts=None):
            seen.append(list(texts))
            return scorer.score(queries, titles, texts)

    reward = RelevanceReward(Recording())
    completions = ["2 Ah battery", "Product title: Bosch Cordless Drill 18V Black | 2 Ah battery",
                   "1. Bosch Cordless Drill 18V Black 2. 2 Ah battery", "Bosch Cordless Drill 18V Black"]
    rewards = reward(completions=completions, query=["cordless drill"] * 4, title=[TITLE] * 4,
                     label=[1.0] * 4)
    assert seen[-1] == ["2 Ah battery"] * 3 + [None]  # the title alone: scored as no summary
    assert rewards[0] == rewards[1] == rewards[2]


def test_evaluation_counts_defects_beside_coverage():
    from relsum.evaluation.report import defects_text
    from relsum.pipelines.evaluate import summary_coverage

    pairs = pd.DataFrame({"product_id": ["a", "a", "b", "c"], "title": [TITLE, TITLE, "Phone Case", "Box"],
                          "query": ["q1", "q2", "q1", "q3"]})
    by_product = pd.Series({"a": "Product details: 2 Ah battery", "b": "colour: clear | colour: clear"})
    cov = summary_coverage(pairs, by_product)
    assert cov["products_with_summary"] == 2
    assert cov["defects"] == dict.fromkeys(DEFECT_KINDS, 0) | {"n": 2, "boilerplate_label": 1,
                                                                "repeated_segment": 1}
    assert defects_text(cov["defects"]).startswith("of 2 summaries: prompt echo 0, boilerplate label 1")


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    df = pd.read_json(SAMPLE_DIR / "products.jsonl", lines=True).head(10)
    path = tmp_path_factory.mktemp("cat") / "catalog.jsonl"
    df[["product_id", "title", "description", "attributes"]].to_json(path, orient="records", lines=True)
    return path


def test_manifest_carries_the_counts_and_a_new_served_form_reserves(tmp_path, catalog, monkeypatch):
    import relsum.summarize.job as job
    from relsum.summarize.config import SummarizeConfig

    df = pd.read_json(catalog, lines=True)
    policy = build_random_policy(tmp_path / "policy", [*map(str, df["title"]), *map(str, df["description"])])
    config = SummarizeConfig(catalog=str(catalog), model_dir=str(policy), out_dir=str(tmp_path / "out"),
                             shard_size=4, max_new_tokens=6, show_progress=False, threads=1, batch_size=4,
                             dtype="fp32", incremental=True)
    manifest = job.run_summarize(config)
    defects = manifest["summary_defects"]
    generated = manifest["counts"]["generated"]
    assert generated and defects["raw"]["n"] == defects["served"]["n"] == generated
    assert {k: defects["served"][k] for k in DEFECT_KINDS if k not in ("empty", "title_restatement")} == \
        dict.fromkeys(set(DEFECT_KINDS) - {"empty", "title_restatement"}, 0)
    on_disk = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert on_disk["summary_defects"] == defects
    assert job.run_summarize(config)["run_id"] == manifest["run_id"]  # unchanged: nothing to do
    monkeypatch.setattr(job, "SERVED_VERSION", job.SERVED_VERSION + 1)
    again = job.run_summarize(config)  # the served form changed: every product is served anew
    assert again["counts"]["planned"] == again["counts"]["valid"] and again["counts"]["carried_over"] == 0
