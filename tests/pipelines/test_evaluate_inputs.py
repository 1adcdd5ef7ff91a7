"""evaluate with summaries files whose product ids do not match the golden set (issue #15, case 6)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from relsum.cli import main
from relsum.core.errors import InputError
from relsum.pipelines.configs import EvaluateConfig
from relsum.pipelines.evaluate import load_summaries, run


@pytest.fixture(scope="module")
def golden(golden_subset):
    """6 golden queries of the bundled sample with their judged products."""
    return golden_subset(6)


def _ids(golden) -> list[str]:
    return sorted(pd.read_csv(golden / "judgments.csv", dtype=str)["product_id"].unique())


def _write(tmp_path, ids, name="s.csv") -> str:
    path = tmp_path / name
    pd.DataFrame({"product_id": ids, "summary": "black usb cable"}).to_csv(path, index=False)
    return str(path)


def _config(golden, tmp_path, summaries: dict, **kw) -> EvaluateConfig:
    return EvaluateConfig(golden=str(golden), summaries=summaries, out_dir=str(tmp_path / "eval"), n_boot=20,
                          **kw)


@pytest.mark.parametrize(("case", "transform", "match"), [
    ("none", lambda ids: [f"other-{i}" for i in ids], r"cover 0 of \d+ judged golden products \(0\.0%\)"),
    ("half", lambda ids: ids[: len(ids) // 2], r"\(\d+\.\d%\), below min_summary_coverage=0.95"),
    ("upper case", lambda ids: [i.upper() for i in ids], "match only when case is ignored"),
])
def test_mismatched_ids_are_refused_before_scoring(golden, tmp_path, case, transform, match):
    path = _write(tmp_path, transform(_ids(golden)))
    with pytest.raises(InputError, match=match):
        run(_config(golden, tmp_path, {"mine": path}), scorer=None)  # refused before a scorer is loaded
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_ids_are_stripped_and_coverage_is_reported(golden, tmp_path, tiny_cross_encoder_dir, capsys):
    ids = _ids(golden)
    padded = _write(tmp_path, [f"  {i} " for i in ids], "padded.csv")
    assert load_summaries(padded).index.tolist() == ids
    half = _write(tmp_path, ids[: len(ids) // 2], "half.csv")
    code = main(["evaluate", "--golden", str(golden), "--reward-model", str(tiny_cross_encoder_dir),
                 "--summaries", f"padded={padded}", "--summaries", f"half={half}", "--out",
                 str(tmp_path / "eval"), "n_boot=20", "min_summary_coverage=0"])
    assert code == 0
    printed = capsys.readouterr().out
    n = len(ids)
    assert f"100.0% ({n}/{n})" in printed and f"({n // 2}/{n})" in printed and "summary coverage" in printed
    out = tmp_path / "eval"
    assert f"\nreport: {out / 'report.html'}  metrics: {out / 'metrics.json'}\n" in printed
    coverage = json.loads((tmp_path / "eval" / "metrics.json").read_text())["summary_coverage"]
    assert coverage["padded"]["coverage"] == 1.0 and coverage["half"]["products_with_summary"] == n // 2


def test_cli_refusal_is_one_line_and_exit_2(golden, tmp_path, capsys):
    path = _write(tmp_path, [i.lower() + "-x" for i in _ids(golden)])
    assert main(["evaluate", "--golden", str(golden), "--summaries", f"mine={path}",
                 "--out", str(tmp_path / "eval")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("relsum evaluate: error: summaries 'mine'") and path in err[0]


def test_bad_summaries_files_are_input_errors(tmp_path):
    dup = tmp_path / "dup.csv"
    pd.DataFrame({"product_id": ["a", "a "], "summary": ["x", "y"]}).to_csv(dup, index=False)
    with pytest.raises(InputError, match="duplicate product_id"):
        load_summaries(str(dup))
    blank = tmp_path / "blank.csv"
    pd.DataFrame({"product_id": ["a", " "], "summary": ["x", "y"]}).to_csv(blank, index=False)
    with pytest.raises(InputError, match="without a product_id, e.g. row 3"):
        load_summaries(str(blank))
    no_column = tmp_path / "no_column.csv"
    no_column.write_text("id,summary\na,b\n")
    with pytest.raises(InputError, match="lacks column"):
        load_summaries(str(no_column))


def test_summarize_golden_writes_the_file_load_summaries_reads(golden, tmp_path, tiny_policy_dir):
    from relsum.data.golden import load_golden
    from relsum.pipelines.evaluate import golden_products, summarize_golden
    from relsum.policy.config import PolicyConfig

    products = golden_products(load_golden(golden))
    assert products["product_id"].is_unique and list(products.columns) == ["product_id", "title", "text"]
    products = products.head(4)
    policy = PolicyConfig(model_dir=tiny_policy_dir, max_prompt_tokens=128, max_summary_tokens=12)
    series = summarize_golden(products, policy, tmp_path / "s.parquet", tiny_policy_dir)
    assert series.index.tolist() == products["product_id"].tolist()
    pd.testing.assert_series_equal(load_summaries(str(tmp_path / "s.parquet")), series, check_names=False,
                                   check_index_type=False)


def test_evaluation_paths_leave_out_files_not_written(tmp_path):
    from relsum.pipelines.evaluate import EvaluationPaths, EvaluationResult

    report = {"pr_curves": tmp_path / "pr_curves.png", "md": tmp_path / "report.md",
              "html": tmp_path / "report.html"}  # no win/loss plot: no candidate besides the baseline
    paths = EvaluationPaths.under(tmp_path, report)
    assert paths.win_loss is None and paths.metrics == str(tmp_path / "metrics.json")
    assert list(paths.to_dict()) == ["scores", "metrics", "pr_curves", "md", "html"]
    result = EvaluationResult(metrics={"subsets": {}}, table="t", paths=paths).to_dict()
    assert result == {"metrics": {"subsets": {}}, "table": "t", "paths": paths.to_dict()}
    json.dumps(result)  # what ablation.json and the DAG steps store
