"""Hostile interleaving exports (issue 23, cases 8 and 18): edited, truncated or text-typed exports are
refused or read correctly, never analysed into a wrong verdict. No model: the export is built here."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from relsum.cli import main
from relsum.online import interleaving as il
from relsum.online.export import ExportError, export_problems, read_export
from relsum.pipelines.configs import AnalyzeConfig
from relsum.pipelines.interleaving import run_analyze

COLUMNS = ["experiment_id", "query_id", "query", "position", "product_id", "team"]


def _export(n_items: int = 4, queries: tuple[str, ...] = ("q1", "q2")) -> pd.DataFrame:
    rows = []
    for q in queries:
        ranking = [f"{q}-p{i}" for i in range(n_items)]
        items = il.team_draft_interleave(ranking, ranking[::-1], rng=il.query_rng(1, q))
        rows += [("exp", q, f"text {q}", pos, pid, team) for pos, (pid, team) in enumerate(items, 1)]
    return pd.DataFrame(rows, columns=COLUMNS)


def _analyze(tmp_path, export_path, events: pd.DataFrame):
    events.to_csv(tmp_path / "events.csv", index=False)
    return run_analyze(AnalyzeConfig(export=str(export_path), events=str(tmp_path / "events.csv"),
                                     out_dir=str(tmp_path / "out")))


def _clicks(q: str, positions: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"query_id": [q] * len(positions), "impression_id": [f"{q}-i{k}" for k in
                                                                                 range(len(positions))],
                         "event": ["click"] * len(positions), "position": positions})


def test_valid_export_has_no_problems():
    assert export_problems(_export()) == []


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda df: df.assign(team=df["team"].where(df.index != 1, "treatment")),
     "row 1: team 'treatment' is neither 'control' nor 'variation'"),
    (lambda df: df.assign(position=df["position"].where(df.index != 1, 1)),
     "query_id 'q1' has 2 items at position 1 (['q1-p"),
    (lambda df: df.drop(index=1), "query_id 'q1' has no item at position(s) [2] of 1..4"),
    (lambda df: df.assign(product_id=df["product_id"].where(df.index != 1, df["product_id"][0])),
     "query_id 'q1' lists product"),
    (lambda df: df.assign(position=df["position"].astype(object).where(df.index != 2, "2.5")),
     "row 2: position '2.5' is not a whole number >= 1"),
    (lambda df: df.assign(query=df["query"].where(df.index != 3, "other text")), "query_id 'q1' has 2 query"),
    (lambda df: df.drop(columns="team"), "missing required column(s) ['team']"),
])
def test_edited_export_problems_are_named(edit, expected):
    problems = export_problems(edit(_export()))
    assert any(p.startswith(expected) for p in problems), problems


def test_edited_export_is_refused_before_a_click_counts(tmp_path):
    """Old code: team 'treatment' at position 1 and a second item at position 2 were analysed, and a click
    at position 2 became a win for whichever team the reordering put there."""
    export = _export()
    export.loc[0, "team"] = "treatment"
    extra = export.iloc[[1]].assign(product_id="q1-extra", team="variation")
    edited = pd.concat([export, extra], ignore_index=True)
    edited.to_parquet(tmp_path / "edited.parquet")
    with pytest.raises(ExportError) as err:
        _analyze(tmp_path, tmp_path / "edited.parquet", _clicks("q1", [1, 2]))
    text = str(err.value)
    assert str(tmp_path / "edited.parquet") in text and "team 'treatment'" in text
    assert "2 items at position 2" in text and "re-run `relsum export-interleaving`" in text
    assert not (tmp_path / "out" / "interleaving_results.json").exists()


def test_truncated_export_is_one_line_exit_2(tmp_path, capsys):
    _export().to_parquet(tmp_path / "interleaved.parquet")
    data = (tmp_path / "interleaved.parquet").read_bytes()
    (tmp_path / "interleaved.parquet").write_bytes(data[: len(data) // 2])
    _clicks("q1", [1]).to_csv(tmp_path / "events.csv", index=False)
    code = main(["analyze-interleaving", "--export", str(tmp_path / "interleaved.parquet"),
                 "--events", str(tmp_path / "events.csv"), "--out", str(tmp_path / "out")])
    assert code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    assert str(tmp_path / "interleaved.parquet") in lines[0]
    assert "truncated or damaged" in lines[0] and "re-run `relsum export-interleaving`" in lines[0]


def test_truncated_csv_export_is_refused(tmp_path):
    """A CSV export cut mid-row reads as a short last row; old code analysed it (the row's team missing)."""
    _export().to_csv(tmp_path / "interleaved.csv", index=False)
    text = (tmp_path / "interleaved.csv").read_text()
    (tmp_path / "interleaved.csv").write_text(text[: text.rstrip("\n").rfind(",")])
    with pytest.raises(ExportError, match=r"row 7 unreadable \(line 9: 5 fields where the header has 6"):
        read_export(tmp_path / "interleaved.csv")


def test_csv_export_positions_are_numbers(tmp_path):
    """A CSV export reads positions as text; old code sorted "10" before "2" and credited a click at
    position 2 to the item at position 10."""
    export = _export(n_items=12, queries=("q1",))
    export.to_csv(tmp_path / "interleaved.csv", index=False)
    read = read_export(tmp_path / "interleaved.csv")
    assert read["position"].dtype == "int64" and read["position"].tolist() == list(range(1, 13))
    team_at_2 = export.loc[export["position"] == 2, "team"].item()
    assert export.loc[export["position"] == 10, "team"].item() != team_at_2  # the seed makes them differ
    result = _analyze(tmp_path, tmp_path / "interleaved.csv", _clicks("q1", [2]))
    overall = result.results["overall"]
    assert overall["wins" if team_at_2 == "variation" else "losses"] == 1


def test_unreadable_event_row_is_rejected_not_counted(tmp_path):
    """Old code ignored the reader's ``_read_error``: a long CSV row (a shifted or pasted-together line)
    counted as a click with whatever its first fields said."""
    _export().to_parquet(tmp_path / "interleaved.parquet")
    (tmp_path / "events.csv").write_text("query_id,impression_id,event,position\nq1,i1,click,2,9\n"
                                         "q1,i2,click,1\n")
    result = run_analyze(AnalyzeConfig(export=str(tmp_path / "interleaved.parquet"),
                                       events=str(tmp_path / "events.csv"), out_dir=str(tmp_path / "out")))
    assert result.results["events_matched"] == 1 and result.results["events_rejected"] == 1
    rejects = pd.read_csv(result.paths.rejects)
    assert rejects["reason"].tolist() == [
        "unreadable row: line 2: 5 fields where the header has 4 (long row, extra '9')"]


def _nested_jsonl(export: pd.DataFrame) -> str:
    """``interleaved.jsonl`` as ``run_export`` writes it: one list per query."""
    return "".join(json.dumps({"experiment_id": "exp", "query_id": q, "query": g["query"].iloc[0],
                               "items": g[["position", "product_id", "team"]].to_dict("records")}) + "\n"
                   for q, g in export.groupby("query_id", sort=False))


def test_nested_jsonl_export_reads_like_the_parquet_and_truncated_is_refused(tmp_path):
    export = _export()
    (tmp_path / "interleaved.jsonl").write_text(_nested_jsonl(export))
    pd.testing.assert_frame_equal(read_export(tmp_path / "interleaved.jsonl"),
                                  export.astype({"position": "int64"}), check_dtype=False)
    text = (tmp_path / "interleaved.jsonl").read_text()
    (tmp_path / "interleaved.jsonl").write_text(text[: len(text) - 30])  # cut inside the last list
    with pytest.raises(ExportError, match=r"row 4 unreadable \(line 2: invalid JSON"):
        read_export(tmp_path / "interleaved.jsonl")
