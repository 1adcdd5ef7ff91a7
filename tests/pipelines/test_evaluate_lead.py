"""The ``lead`` candidate of ``relsum evaluate``: title + the first N words of the catalog text."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from relsum.pipelines.configs import EvaluateConfig
from relsum.pipelines.evaluate import run
from relsum.policy.served import SERVED_MAX_WORDS
from relsum.scoring.config import ScorerConfig
from relsum.scoring.documents import lead_text
from relsum.scoring.factory import make_scorer


def test_lead_text_cuts_whitespace_words_and_drops_a_dangling_separator():
    text = "Noise Cancelling Headphones | product type: Headphones | colour: Black"
    assert lead_text(text, 3) == "Noise Cancelling Headphones"
    assert lead_text(text, 4) == "Noise Cancelling Headphones"  # not "... Headphones |"
    assert lead_text(text, 6) == "Noise Cancelling Headphones | product type:"
    assert lead_text("  a\tb\n c ", 2) == "a b"
    assert lead_text(text, 100) == " ".join(text.split())
    assert lead_text(None, 5) == "" and lead_text(float("nan"), 5) == ""
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="n_words"):
            lead_text(text, bad)


def _golden(folder):
    """6 queries (half tail) x 3 products whose text is longer than 5 words."""
    folder.mkdir()
    queries, judgments, products = [], [], []
    for q in range(6):
        queries.append({"query_id": f"q{q}", "query": f"usb cable {q}",
                        "rarity_tier": "tail" if q % 2 else "head"})
        for i, grade in enumerate(("3", "2", "0")):
            pid = f"p{q}{i}"
            products.append({"product_id": pid, "title": f"Acme cable {q}{i}",
                             "description": f"braided usb cable number {i} for phones and laptops",
                             "features": f"length: {i + 1} m | colour: black"})
            judgments.append({"query_id": f"q{q}", "product_id": pid, "grade": grade})
    pd.DataFrame(queries).to_csv(folder / "queries.csv", index=False)
    pd.DataFrame(judgments).to_csv(folder / "judgments.csv", index=False)
    pd.DataFrame(products).to_json(folder / "products.jsonl", orient="records", lines=True)
    (folder / "relsum.yaml").write_text('grade_map: {"3": 1.0, "2": 0.5, "0": 0.0}\n')
    return folder


def test_evaluate_scores_and_reports_the_lead_candidate(tmp_path, tiny_cross_encoder_dir):
    golden = _golden(tmp_path / "golden")
    scorer = make_scorer(tiny_cross_encoder_dir, ScorerConfig(store=False))
    config = EvaluateConfig(golden=str(golden), reward_model=str(tiny_cross_encoder_dir),
                            out_dir=str(tmp_path / "eval"), n_boot=20, lead_words=5)
    result = run(config, scorer=scorer)

    assert result.metrics["config"]["candidates"] == ["none", "desc", "lead"]
    assert result.metrics["lead_words"] == 5
    for subset in ("full", "tail"):
        assert "gain_pct" in result.metrics["subsets"][subset]["candidates"]["lead"]
    scores = pd.read_parquet(result.paths.scores)
    row = scores.iloc[0]
    from relsum.data.golden import load_golden

    catalog = load_golden(golden).catalog.set_index("product_id")
    text = catalog.loc[row["product_id"], "text"]
    assert lead_text(text, 5) != text  # the lead really is a cut of the text
    expected = scorer.score([f"usb cable {row['query_id'][1:]}"], [catalog.loc[row["product_id"], "title"]],
                            [lead_text(text, 5)])[0]
    assert row["score_lead"] == pytest.approx(float(expected))
    assert not (scores["score_lead"] == scores["score_desc"]).all()
    # every table and the report carry the row
    assert "| lead |" in result.table
    md = Path(result.paths.md).read_text(encoding="utf-8")
    assert "| lead |" in md and "`lead` = title + the first 5 words" in md
    assert "lead" in Path(result.paths.html).read_text(encoding="utf-8")
    assert json.loads(Path(result.paths.metrics).read_text())["lead_words"] == 5

    off = run(EvaluateConfig(golden=str(golden), reward_model=str(tiny_cross_encoder_dir),
                             out_dir=str(tmp_path / "eval0"), n_boot=20, lead_words=0), scorer=scorer)
    assert off.metrics["config"]["candidates"] == ["none", "desc"]
    assert "score_lead" not in pd.read_parquet(off.paths.scores).columns


def test_lead_is_on_by_default_and_reserved():
    assert EvaluateConfig().lead_words == SERVED_MAX_WORDS
    with pytest.raises(ValueError, match="not none/desc/lead"):
        EvaluateConfig(summaries={"lead": "x.csv"})
    with pytest.raises(ValueError, match="lead_words"):
        EvaluateConfig(lead_words=-1)
