"""The batch job feeds a tiny policy build no longer prompts than it was warmed up with."""

from __future__ import annotations

from relsum.summarize.config import SummarizeConfig
from relsum.summarize.job import run_summarize


def test_tiny_policy_build_caps_the_prompt_budget(tmp_path, catalog, tiny_policy_dir):
    small = tmp_path / "small.jsonl"
    catalog.head(3).rename(columns={"text": "description"}).to_json(small, orient="records", lines=True)

    def budget(out: str, max_input_tokens: int) -> int:
        config = SummarizeConfig(catalog=str(small), model_dir=str(tiny_policy_dir),
                                 out_dir=str(tmp_path / out),
                                 max_new_tokens=6, show_progress=False, threads=1,
                                 max_input_tokens=max_input_tokens)
        return run_summarize(config)["prompt_token_budget"]

    assert budget("a", 384) == 128  # positions past the warm-up's 128 tokens were never trained
    assert budget("b", 96) == 96
