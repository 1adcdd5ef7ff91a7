"""One served summary: every path that scores, stores or serves a summary sees the same string."""

from __future__ import annotations

import pandas as pd
import pytest

from relsum.policy.prompt import INSTRUCTION, build_prompt
from relsum.policy.served import served_summary

N_PRODUCTS = 6
MAX_NEW = 12


@pytest.mark.parametrize(("raw", "served"), [
    ("  colour: red,\n next line", "colour: red,"),
    ("\n\n colour: red\nsecond turn", "colour: red"),
    (build_prompt("Acme Drill", "cordless 18 V drill") + " cordless, 18 V\nQ: more?", "cordless, 18 V"),
    (INSTRUCTION + "\n battery: 2 Ah", "battery: 2 Ah"),
    (" <b>colour:</b> red &amp; blue see https://x.example/y **fast**", "colour: red & blue see fast"),
    ("&#91;TITLE&#93;: weight 2 kg", "weight 2 kg"),  # a marker that only cleaning exposes
    (" weight: 2 kg [DESCRIPTION]: another product", "weight: 2 kg"),
    ("red\ufffd\u2028blue", "red"),
    (None, ""), ("   \n  ", ""), (float("nan"), ""),
])
def test_served_summary_cases(raw, served):
    assert served_summary(raw) == served


def test_served_summary_is_idempotent_and_caps_words():
    pieces = [" a", "\n", "&amp;", "&#91;TITLE&#93;:", "[DESCRIPTION]", INSTRUCTION, "**", "http://x.y/z",
              "www.a.b",
              "<i>", "</i>", "\ufffd", "  ", "- ", "colour: red", "\r\n", "#", "`", "2.5 kg", "\u200b"]
    import random

    rng = random.Random(0)
    for _ in range(400):
        raw = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
        once = served_summary(raw)
        assert served_summary(once) == once, raw
        assert "\n" not in once and once == once.strip()
    long = " ".join(f"w{i}" for i in range(100))
    assert served_summary(long).split() == long.split()[:64]
    assert served_summary(long,
                          max_words=5) == "w0 w1 w2 w3 w4" and len(served_summary(long, 0).split()) == 100


class RecordingScorer:
    """The real scorer, recording the document texts each call hands to the cross-encoder."""

    def __init__(self, scorer):
        self.scorer, self.texts = scorer, []
        self.fingerprint = scorer.fingerprint

    def score(self, queries, titles, texts=None):
        self.texts.append(None if texts is None else list(texts))
        return self.scorer.score(queries, titles, texts)

    def last(self) -> list:
        return [t or "" for t in self.texts[-1]]


@pytest.fixture(scope="module")
def products(tmp_path_factory, sample_dir):
    from relsum.data.config import ContractConfig
    from relsum.data.contracts import validate_catalog

    raw = pd.read_json(sample_dir / "products.jsonl", lines=True).iloc[400:400 + N_PRODUCTS]
    path = tmp_path_factory.mktemp("served") / "catalog.jsonl"
    raw.to_json(path, orient="records", lines=True)
    valid = validate_catalog(raw, ContractConfig()).valid[["product_id", "title", "text"]]
    return path, valid.reset_index(drop=True)


def _raw_completions(model, tok, products: pd.DataFrame, prompt_tokens: int) -> list[str]:
    """What TRL hands the reward: the decoded new tokens of a greedy completion, not post-processed."""
    import torch

    from relsum.policy.prompt import render_prompts, resolve_chat_template

    templated = resolve_chat_template(tok, None)
    strings = render_prompts(tok, products["title"].tolist(), products["text"].tolist(),
                             max_prompt_tokens=prompt_tokens, use_chat_template=templated)
    raw = []
    with torch.inference_mode():
        # eos only (no stop at a line break), so the raw text can run past its first line
        for string in strings:
            ids = tok(string, add_special_tokens=not templated, return_tensors="pt")
            out = model.generate(**ids, max_new_tokens=MAX_NEW, do_sample=False,
                                 pad_token_id=tok.pad_token_id, temperature=None, top_p=None, top_k=None)
            raw.append(tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))
    return raw


@pytest.mark.slow
def test_every_path_scores_and_serves_the_same_string(tmp_path, products, tiny_policy_dir,
                                                      tiny_cross_encoder_dir):
    from relsum.lifecycle.config import SummaryGateConfig
    from relsum.lifecycle.gate import gate_summaries
    from relsum.pipelines import evaluate as evaluate_stage
    from relsum.pipelines.configs import ExportConfig
    from relsum.pipelines.interleaving import run_export
    from relsum.policy.config import PolicyConfig
    from relsum.policy.load import load_policy, prompt_cap
    from relsum.policy.reward import RelevanceReward
    from relsum.scoring.config import ScorerConfig
    from relsum.scoring.scorer import Scorer
    from relsum.summarize.config import SummarizeConfig
    from relsum.summarize.job import read_job_output, run_summarize
    from relsum.training.config import OptionsConfig
    from relsum.training.options import SummaryReward
    from relsum.training.policy_eval import compare_policies, summarize_products

    catalog_path, frame = products
    model, tok = load_policy(tiny_policy_dir)
    policy = PolicyConfig(model_dir=tiny_policy_dir, max_summary_tokens=MAX_NEW,
                          max_prompt_tokens=prompt_cap(tiny_policy_dir, 384))
    raw = _raw_completions(model, tok, frame, policy.max_prompt_tokens)
    expected = [served_summary(r, title=t) for r, t in zip(raw, frame["title"], strict=True)]
    assert all(expected) and any(r != e for r, e in zip(raw, expected, strict=True))  # cleaning did something
    scorer = RecordingScorer(Scorer(tiny_cross_encoder_dir, ScorerConfig(store=False)))
    ids = frame["product_id"].tolist()
    queries, labels = [f"query {i}" for i in range(len(frame))], [0.5] * len(frame)

    # the GRPO reward (paper) and the reward with options on
    RelevanceReward(scorer)(completions=raw, query=queries, title=frame["title"].tolist(), label=labels)
    assert scorer.last() == expected
    SummaryReward(scorer, OptionsConfig(grounding_weight=0.5), num_generations=1)(
        completions=raw, query=queries, title=frame["title"].tolist(), label=labels,
        text=frame["text"].tolist())
    assert scorer.last() == expected

    # generate_summaries via policy_eval: the demo, the DAG's evaluation, ablate and the held-out comparison
    greedy = summarize_products(model, tok, frame, policy)
    assert greedy.loc[ids].tolist() == expected
    pairs = frame.assign(query=queries, label=labels)
    compare_policies(pairs, greedy, greedy, scorer, n_boot=10)
    assert scorer.last() == expected

    # the catalog job (in-process HF backend)
    run_summarize(SummarizeConfig(catalog=str(catalog_path), model_dir=tiny_policy_dir,
                                  out_dir=str(tmp_path / "job"),
                                  max_new_tokens=MAX_NEW, show_progress=False, threads=1, incremental=False))
    stored = read_job_output(str(tmp_path / "job")).set_index("product_id")["summary"]
    assert stored.loc[ids].tolist() == expected
    # `--summaries grpo=<job out>`
    assert evaluate_stage.load_summaries(str(tmp_path / "job")).loc[ids].tolist() == expected

    # the offline evaluation, the deployment gate and the interleaving export read the stored file
    stored_path = tmp_path / "stored.parquet"
    stored.rename_axis("product_id").reset_index().to_parquet(stored_path)
    assert evaluate_stage.load_summaries(str(stored_path)).loc[ids].tolist() == expected
    gated = gate_summaries(pairs, stored, scorer, SummaryGateConfig(margin=1.0))
    assert scorer.last() == expected and gated.summaries.loc[ids].tolist() == expected
    cands = tmp_path / "cands.csv"
    pd.DataFrame({"query_id": [f"q{i}" for i in range(len(ids))], "query": queries,
                  "product_id": ids}).to_csv(cands, index=False)
    run_export(ExportConfig(candidates=str(cands), catalog=str(catalog_path), summaries=str(stored_path),
                            out_dir=str(tmp_path / "export")), scorer=scorer)
    assert scorer.last() == expected
