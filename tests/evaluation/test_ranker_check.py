"""``relsum reward-model check`` on two hand-built rankers: one that reads text, one that reads titles only.

The rankers are real BERT cross-encoder folders (safetensors, MiniLM tokenizer) scored by the real scorer.
Their weights are set by hand so their behaviour is known exactly: the score rises with the share of one
keyword token among the input tokens (uniform attention carries that share to [CLS]; a zero vector stays
zero through every LayerNorm, so inputs without the keyword all score the same). On the tiny golden set
below the relevant product's *text* holds ``TEXT_WORD`` and its *title* holds ``TITLE_WORD``:

* keyword ``TEXT_WORD``: titles alone tie, text ranks the relevant product first -> reads text;
* keyword ``TITLE_WORD``: the title already ranks it first and no text holds the keyword, so text cannot
  change the ranking -> ignores text (gain exactly 0).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from relsum.cli import main
from relsum.evaluation.ranker_check import (
    IGNORES_TEXT,
    READS_TEXT,
    UNDEFINED,
    check_ranker,
    foreign_facts,
    format_check,
    verdict_for,
)
from relsum.pipelines.configs import RewardModelCheckConfig
from relsum.pipelines.reward_model_check import RESULT_FILE, run
from relsum.policy.served import SERVED_MAX_WORDS
from relsum.scoring.config import ScorerConfig
from relsum.scoring.factory import make_scorer

TEXT_WORD, TITLE_WORD = "zebra", "deluxe"
N_QUERIES = 12


def build_keyword_ranker(out_dir: Path, keyword: str) -> Path:
    """A 1-layer BERT cross-encoder whose score grows with the share of ``keyword`` tokens (module doc)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from relsum.core.paths import minilm_dir

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()))
    assert len(tokenizer.tokenize(keyword)) == 1, keyword
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=4, num_hidden_layers=1,
                        num_attention_heads=1, intermediate_size=4, max_position_embeddings=512, num_labels=1)
    model = BertForSequenceClassification(config)
    eye = torch.eye(4)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.zero_()
            if "LayerNorm.weight" in name:
                param.fill_(1.0)
        emb = model.bert.embeddings.word_embeddings.weight
        emb[tokenizer.convert_tokens_to_ids(keyword)] = torch.tensor([1.0, -1.0, 0.0, 0.0])
        emb[tokenizer.cls_token_id] = torch.tensor([0.0, 0.0, 1.0, -1.0])
        layer = model.bert.encoder.layer[0]
        layer.attention.self.value.weight.copy_(eye)
        layer.attention.output.dense.weight.copy_(eye)
        model.bert.pooler.dense.weight.copy_(eye)
        model.classifier.weight.copy_(torch.tensor([[8.0, 0.0, 0.0, 0.0]]))
        model.classifier.bias.fill_(-1.0)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    return out_dir


def write_golden(folder: Path) -> Path:
    """12 queries (half tail) x 4 judged products: label 1, 0.5, 0, 0; the keywords as in the module doc."""
    folder.mkdir(parents=True, exist_ok=True)
    queries, judgments, products = [], [], []
    for q in range(N_QUERIES):
        qid = f"q{q:02d}"
        queries.append({"query_id": qid, "query": f"rain jacket {q}",
                        "rarity_tier": "tail" if q % 2 else "head"})
        rows = [  # (grade, title, description, features)
            ("3", f"acme {TITLE_WORD} coat {q}", f"{TEXT_WORD} {TEXT_WORD} shell for rain",
             f"material: {TEXT_WORD} nylon | colour: blue"),
            ("2", f"acme coat {q}", f"light coat with one {TEXT_WORD} zip pocket and a hood for rain days",
             "colour: red"),
            ("0", f"acme shirt {q}", "cotton shirt for summer days", "fabric: cotton | colour: white"),
            ("0", f"acme scarf {q}", "wool scarf for winter", "fabric: wool"),
        ]
        for i, (grade, title, description, features) in enumerate(rows):
            pid = f"p{q:02d}{i}"
            products.append({"product_id": pid, "title": title, "description": description,
                             "features": features})
            judgments.append({"query_id": qid, "product_id": pid, "grade": grade})
    pd.DataFrame(queries).to_csv(folder / "queries.csv", index=False)
    pd.DataFrame(judgments).to_csv(folder / "judgments.csv", index=False)
    pd.DataFrame(products).to_json(folder / "products.jsonl", orient="records", lines=True)
    (folder / "relsum.yaml").write_text('grade_map: {"3": 1.0, "2": 0.5, "1": 0.0, "0": 0.0}\n')
    return folder


@pytest.fixture(scope="module")
def golden_dir(tmp_path_factory) -> Path:
    return write_golden(tmp_path_factory.mktemp("check_golden"))


@pytest.fixture(scope="module")
def text_ranker(tmp_path_factory) -> Path:
    return build_keyword_ranker(tmp_path_factory.mktemp("reads_text"), TEXT_WORD)


@pytest.fixture(scope="module")
def title_ranker(tmp_path_factory) -> Path:
    return build_keyword_ranker(tmp_path_factory.mktemp("reads_titles"), TITLE_WORD)


def _check(model_dir: Path, golden_dir: Path, **kw):
    from relsum.data.golden import load_golden

    scorer = make_scorer(model_dir, ScorerConfig(store=False))
    return check_ranker(load_golden(golden_dir), scorer, n_boot=200, **{"lead_words": 8, **kw})


def test_a_ranker_that_reads_text_and_one_that_ignores_it_get_opposite_verdicts(text_ranker, title_ranker,
                                                                                 golden_dir):
    reads, ignores = _check(text_ranker, golden_dir), _check(title_ranker, golden_dir)

    assert reads.verdict == READS_TEXT and reads.reads_text
    assert reads.verdict_line.startswith("reads text: lead-8 lifts NDCG@5 by +")
    full = reads.subsets["full"]["candidates"]
    assert full["lead"]["gain_pct"]["lo"] > 0 and full["desc"]["gain_pct"]["lo"] > 0
    assert full["lead"]["ndcg@5"]["value"] == pytest.approx(1.0)  # keyword share: label 1, 0.5, then 0
    assert reads.subsets["full"]["n_queries_ndcg"] == N_QUERIES and reads.subsets["tail"]["n_queries"] == 6

    assert ignores.verdict == IGNORES_TEXT and not ignores.reads_text
    assert "cannot reward a summary" in ignores.verdict_line
    gain = ignores.headroom()
    assert gain["value"] == pytest.approx(0.0) and gain["lo"] == pytest.approx(0.0)  # text changes no ranking
    # the title ranker ranks well on titles alone: the check is not just "this model is bad"
    assert ignores.subsets["full"]["candidates"]["none"]["ndcg@5"]["value"] > \
        reads.subsets["full"]["candidates"]["none"]["ndcg@5"]["value"]


def test_calibration_and_counterfactual_sensitivity_by_label(text_ranker, title_ranker, golden_dir):
    reads, ignores = _check(text_ranker, golden_dir), _check(title_ranker, golden_dir)

    assert set(reads.calibration["lead"]) == {"0", "0.5", "1"}
    row = reads.calibration["lead"]["1"]
    assert row["n"] == N_QUERIES and row["mean_reward"] == pytest.approx(row["mean_score"] - 1.0, abs=1e-6)
    # text moves label-1 scores towards 1 for the text reader: its reward on label 1 improves over title only
    assert reads.calibration["lead"]["1"]["mean_reward"] > reads.calibration["none"]["1"]["mean_reward"]

    # own facts name the keyword only for label-1 products: they lift label 1, not label 0
    sens = reads.sensitivity
    assert sens["1"]["own_lift"] > 0.05 and sens["0"]["own_lift"] == pytest.approx(0.0, abs=1e-6)
    assert sens["1"]["n"] == N_QUERIES and reads.n_pairs_without_facts == 0
    assert not any("own facts lift label-1" in w for w in reads.warnings)
    # the title reader gains nothing from its own facts on label 1 (appended text only dilutes its keyword)
    assert ignores.sensitivity["1"]["own_lift"] <= 0
    assert any("own facts lift label-1" in w for w in ignores.warnings)

    text = format_check(reads)
    assert text.startswith("Verdict: reads text") and "title + lead-8" in text and "another product" in text


def test_verdict_needs_a_lift_whose_interval_excludes_zero():
    kind, line = verdict_for({"value": 4.0, "lo": 0.5, "hi": 8.0}, 64, "NDCG@5")
    assert kind == READS_TEXT and line == "reads text: lead-64 lifts NDCG@5 by +4.0% [+0.5, +8.0]"
    kind, line = verdict_for({"value": 3.0, "lo": -1.0, "hi": 7.0}, 64, "NDCG@5")  # could be chance
    assert kind == IGNORES_TEXT and "+3.0% [−1.0, +7.0]" in line and "fix the judge" in line
    assert verdict_for({"value": None, "lo": None, "hi": None}, 64, "NDCG@5")[0] == UNDEFINED


def test_foreign_facts_never_pair_a_product_with_itself_and_are_seeded():
    ids = pd.Series([f"p{i}" for i in range(6)] + ["p0"])
    facts = pd.Series(["a", "b", "c", "d", "", "f", "a"])
    first, again = foreign_facts(ids, facts, seed=3), foreign_facts(ids, facts, seed=3)
    assert first == again and set(first) == {"p0", "p1", "p2", "p3", "p5"}  # p4 has no facts
    own = dict(zip(ids, facts, strict=True))
    assert all(text != own[pid] and text for pid, text in first.items())
    assert foreign_facts(pd.Series(["x"]), pd.Series(["only"]), seed=0) == {}


def test_stage_writes_json_and_cli_runs(text_ranker, golden_dir, tmp_path, capsys):
    result = run(RewardModelCheckConfig(reward_model=str(text_ranker), golden=str(golden_dir),
                                        out_dir=str(tmp_path / "a"), n_boot=50, lead_words=8))
    written = json.loads((tmp_path / "a" / RESULT_FILE).read_text())
    assert written["verdict"] == result.verdict == READS_TEXT and written["reads_text"] is True
    assert written["lead_words"] == 8 and written["reward_model"] == str(text_ranker)
    assert written["subsets"]["full"]["candidates"]["lead"]["gain_pct"]["value"] > 0
    assert not list((tmp_path / "a").glob("*.tmp*"))  # atomic: no leftovers

    with pytest.raises(SystemExit) as exc:
        main(["reward-model", "check", "--help"])
    assert exc.value.code == 0
    help_text = capsys.readouterr().out
    assert "--model" in help_text and "--lead-words" in help_text and "foreign_tolerance" in help_text

    status = main(["reward-model", "check", "--model", str(text_ranker), "--golden", str(golden_dir),
                   "--out", str(tmp_path / "b"), "--lead-words", "8", "n_boot=50"])
    out = capsys.readouterr().out
    assert status == 0 and out.startswith("Verdict: reads text: lead-8")
    assert json.loads((tmp_path / "b" / RESULT_FILE).read_text())["verdict"] == READS_TEXT


@pytest.mark.slow  # MLflow's import and sqlite store creation: ~40 s on a loaded 2-core host
def test_check_logs_into_an_active_mlflow_run_only(text_ranker, golden_dir, tmp_path):
    import mlflow

    from relsum.lifecycle import tracking
    from relsum.lifecycle.config import TrackingConfig
    from relsum.pipelines.reward_model_check import log_to_active_run

    result = _check(text_ranker, golden_dir)
    assert mlflow.active_run() is None and log_to_active_run(result) is None
    config = TrackingConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                            artifact_location=(tmp_path / "art").as_uri(), experiment="check")
    with tracking.tracked_run(config, "check") as active:
        assert log_to_active_run(result) == active.info.run_id
    logged = tracking.client(config).get_run(active.info.run_id).data.metrics
    assert logged["ranker_check.baseline.lead.full.ndcg_at_5.gain_pct.lo"] > 0
    assert logged["ranker_check.reads_text"] == 1.0


def test_bad_inputs_fail_clearly(tmp_path, text_ranker, golden_dir):
    from relsum.core.errors import RelsumError

    with pytest.raises(ValueError, match="lead_words"):
        RewardModelCheckConfig(lead_words=0)
    assert RewardModelCheckConfig().lead_words == SERVED_MAX_WORDS
    with pytest.raises(RelsumError, match="does not exist"):
        run(RewardModelCheckConfig(reward_model=str(tmp_path / "nope"), golden=str(golden_dir),
                                   out_dir=str(tmp_path / "o")))
