"""Hostile input and faults for ``relsum evaluate`` (issue 23, cases 5, 9 and 19).

Summaries files follow the data contracts' missing-value and type rules; the outputs are staged and swapped
in as one set, so a kill or a full disk mid-write leaves the previous evaluation exactly as it was.
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import signal
import subprocess
import sys

import pandas as pd
import pytest

from relsum.cli import user_error_line
from relsum.core.errors import EnvironmentProblem, InputError
from relsum.pipelines.configs import EvaluateConfig
from relsum.pipelines.evaluate import load_summaries, run, summary_coverage, write_outputs


@pytest.fixture(scope="module")
def golden(golden_subset):
    """3 golden queries of the bundled sample with their judged products."""
    return golden_subset(3)


@pytest.fixture(scope="module")
def evaluated(golden, tmp_path_factory, tiny_cross_encoder_dir):
    """One real evaluation (tiny scorer, one summaries candidate): its folder, metrics and scores."""
    ids = sorted(pd.read_csv(golden / "judgments.csv", dtype=str)["product_id"].unique())
    root = tmp_path_factory.mktemp("evaluated")
    pd.DataFrame({"product_id": ids, "summary": "black usb cable"}).to_csv(root / "s.csv", index=False)
    result = run(EvaluateConfig(golden=str(golden), reward_model=str(tiny_cross_encoder_dir),
                                summaries={"mine": str(root / "s.csv")}, out_dir=str(root / "eval"),
                                n_boot=20))
    return root / "eval", result.metrics, pd.read_parquet(root / "eval" / "scores.parquet")


def _snapshot(folder: pathlib.Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _leftovers(folder: pathlib.Path) -> list[str]:
    """Staging and old folders of the swap left beside ``folder``."""
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}.")
                  and not p.name.endswith(".lock"))


def _previous(evaluated, tmp_path) -> pathlib.Path:
    """A copy of a finished evaluation whose metrics.json differs from what a rerun writes."""
    src, metrics, _ = evaluated
    out = tmp_path / "eval"
    out.mkdir()
    for path in src.iterdir():
        (out / path.name).write_bytes(path.read_bytes())
    (out / "metrics.json").write_text(json.dumps({**metrics, "old": True}))
    return out


# ---- case 5: summaries files -------------------------------------------------------------------------------


def test_null_markers_are_missing_summaries_not_text_or_coverage(tmp_path, caplog):
    path = tmp_path / "s.csv"
    pd.DataFrame({"product_id": ["a", "b", "c", "d", "e", "f", "g"],
                  "summary": ["NaN", "None", "null", " nan ", None, "NA", "usb cable"]}).to_csv(path,
                                                                                            index=False)
    series = load_summaries(str(path))
    assert series.to_dict() == {"f": "NA", "g": "usb cable"}  # NA stays text, as in the contracts
    assert "5 of 7 summaries are missing" in caplog.text
    pairs = pd.DataFrame({"product_id": list("abcdefg")})
    cov = summary_coverage(pairs, series)
    assert cov["products_with_summary"] == 2 and cov["coverage"] == pytest.approx(2 / 7)


@pytest.mark.parametrize(("value", "shown"), [
    ({"colour": "black"}, "summary is dict {'colour': 'black'}"),
    (["black", "usb"], "summary is list ['black', 'usb']"),
    (12, "summary is int 12"),
    (0.5, "summary is float 0.5"),
    (True, "summary is bool True"),
])
def test_jsonl_summaries_of_a_wrong_type_are_refused_not_str_ed(tmp_path, value, shown):
    path = tmp_path / "s.jsonl"
    rows = [{"product_id": "a", "summary": "ok"}, {"product_id": "b", "summary": value},
            {"product_id": "c", "summary": None}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InputError, match=r"1 value\(s\) of a wrong type, e\.g\. record 2: ") as info:
        load_summaries(str(path))
    assert shown in str(info.value) and "nothing is coerced" in str(info.value)


def test_parquet_bytes_summaries_and_bad_ids_are_refused(tmp_path):
    path = tmp_path / "s.parquet"
    pd.DataFrame({"product_id": ["a", "b"], "summary": [b"usb", b"cable"]}).to_parquet(path)
    with pytest.raises(InputError, match=r"2 value\(s\) of a wrong type, e\.g\. record 1: summary is bytes "):
        load_summaries(str(path))
    for ids, match in (([True, False], "product_id is bool True"), ([1.5, 2.0], "product_id is float 1.5")):
        jsonl = tmp_path / "ids.jsonl"
        jsonl.write_text("".join(json.dumps({"product_id": i, "summary": "x"}) + "\n" for i in ids))
        with pytest.raises(InputError, match=match):
            load_summaries(str(jsonl))
    whole = tmp_path / "whole.jsonl"
    whole.write_text('{"product_id": 12.0, "summary": "x"}\n{"product_id": 7, "summary": "y"}\n')
    assert load_summaries(str(whole)).to_dict() == {"12": "x", "7": "y"}
    marker = tmp_path / "marker.csv"
    marker.write_text("product_id,summary\na,x\nNone,y\n")
    with pytest.raises(InputError, match=r"1 row\(s\) without a product_id, e\.g\. row 3"):
        load_summaries(str(marker))


def test_unreadable_rows_are_refused(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"product_id": "a", "summary": "x"}\n{not json\n')
    with pytest.raises(InputError, match=r"1 unreadable row\(s\), e\.g\. line 2: invalid JSON"):
        load_summaries(str(path))
    short = tmp_path / "s.csv"
    short.write_text("product_id,summary\na,x\nb\n")
    with pytest.raises(InputError, match="unreadable row.*short row, not padded"):
        load_summaries(str(short))


# ---- case 9: staged outputs -------------------------------------------------------------------------------


def test_rerun_replaces_the_whole_set_and_leaves_nothing_beside_it(evaluated, tmp_path):
    _, metrics, scores = evaluated
    out = _previous(evaluated, tmp_path)
    paths = write_outputs(out, metrics, scores)
    assert "old" not in json.loads((out / "metrics.json").read_text())
    assert set(paths.to_dict().values()) == {str(p) for p in out.iterdir()}
    assert _leftovers(out) == [] and oct(out.stat().st_mode & 0o777) != "0o700"


def test_foreign_files_in_out_dir_are_refused_before_any_work(golden, tmp_path):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "report.md").write_text("old report")
    config = EvaluateConfig(golden=str(golden), reward_model=str(tmp_path / "no-model"), out_dir=str(out))
    with pytest.raises(InputError, match=r"holds files evaluate did not write \(notes\.txt\)"):
        run(config)  # before the (missing) reward model is looked at
    assert _snapshot(out) == {"notes.txt": b"mine", "report.md": b"old report"}


def test_a_run_killed_mid_write_leaves_the_previous_set(evaluated, tmp_path):
    _, metrics, scores = evaluated
    out = _previous(evaluated, tmp_path)
    before = _snapshot(out)
    (tmp_path / "m.json").write_text(json.dumps(metrics))
    scores.to_parquet(tmp_path / "s.parquet")
    script = ("import json, sys, time, pathlib, pandas as pd\n"
              "import relsum.evaluation.report as report\n"
              "from relsum.pipelines.evaluate import write_outputs\n"
              "def hang(*args, **kwargs):\n"
              "    print('written', flush=True)\n"
              "    time.sleep(600)\n"
              "report.write_report = hang\n"
              "write_outputs(pathlib.Path(sys.argv[1]), json.loads(pathlib.Path(sys.argv[2]).read_text()),\n"
              "              pd.read_parquet(sys.argv[3]))\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(out), str(tmp_path / "m.json"),
                             str(tmp_path / "s.parquet")], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "written"  # scores and metrics are in the staging folder
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert _snapshot(out) == before  # no new metrics.json beside the old report
    staged = _leftovers(out)
    assert len(staged) == 1 and staged[0].startswith(".eval.staging-")
    assert {p.name for p in (tmp_path / staged[0]).iterdir()} == {"scores.parquet", "metrics.json"}
    write_outputs(out, metrics, scores)  # the next run clears what the killed one left
    assert _leftovers(out) == [] and "old" not in json.loads((out / "metrics.json").read_text())


def test_a_swap_killed_between_its_renames_is_undone(evaluated, tmp_path):
    _, metrics, scores = evaluated
    out = _previous(evaluated, tmp_path)
    os.rename(out, tmp_path / ".eval.old-x1")  # the first rename happened, the second did not
    from relsum.data.atomic_dir import check_replaceable, staged_folder
    from relsum.pipelines.evaluate import OUTPUT_FILES

    check_replaceable(out, OUTPUT_FILES, "evaluate")
    with pytest.raises(RuntimeError, match="stop"), staged_folder(out, OUTPUT_FILES, "evaluate"):
        assert json.loads((out / "metrics.json").read_text())["old"] is True  # restored first
        raise RuntimeError("stop")
    assert json.loads((out / "metrics.json").read_text())["old"] is True and _leftovers(out) == []


# ---- case 19: full disk -----------------------------------------------------------------------------------


def test_full_disk_names_the_path_and_leaves_the_previous_set(evaluated, tmp_path, monkeypatch):
    """Fault injection at the lowest writer the report uses: ``Path.write_text`` fails like a full disk
    (errno ENOSPC, no file name, as Python's and pyarrow's writers raise it)."""
    _, metrics, scores = evaluated
    out = _previous(evaluated, tmp_path)
    before = _snapshot(out)
    real = pathlib.Path.write_text

    def full(self, *args, **kwargs):
        if self.name.startswith(".report.html."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", full)
    with pytest.raises(EnvironmentProblem) as info:
        write_outputs(out, metrics, scores)
    line = user_error_line(info.value)
    assert line.startswith(f"evaluate into {out} stopped: No space left on device: ")
    assert "/report.html" in line and "left as it was" in line
    assert _snapshot(out) == before and _leftovers(out) == []


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 1 MiB tmpfs, where the machine lets tests mount one (root with CAP_SYS_ADMIN)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here; the injected ENOSPC test covers the path")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_full_real_disk_leaves_the_previous_set(evaluated, tiny_disk):
    _, metrics, scores = evaluated
    out = _previous(evaluated, tiny_disk)
    before = _snapshot(out)
    free = os.statvfs(tiny_disk).f_bavail * os.statvfs(tiny_disk).f_frsize
    (tiny_disk / "filler").write_bytes(b"\0" * (free - 64 * 1024))  # room for a part of the new set only
    with pytest.raises(EnvironmentProblem, match=rf"evaluate into {out} stopped: No space left on device: "
                                                 rf"{tiny_disk}/\.eval\.staging-"):
        write_outputs(out, metrics, scores)
    assert _snapshot(out) == before and _leftovers(out) == []
    (tiny_disk / "filler").unlink()
    write_outputs(out, metrics, scores)
    assert "old" not in json.loads((out / "metrics.json").read_text())


def test_a_file_added_to_out_during_the_run_is_kept_not_deleted(tmp_path, caplog):
    from relsum.data.atomic_dir import staged_folder
    from relsum.pipelines.evaluate import OUTPUT_FILES

    out = tmp_path / "eval"
    out.mkdir()
    (out / "report.md").write_text("old")
    with staged_folder(out, OUTPUT_FILES, "evaluate") as staging:
        (staging / "report.md").write_text("new")
        (out / "notes.txt").write_text("written by someone else meanwhile")
    assert (out / "report.md").read_text() == "new"
    kept = list(tmp_path.glob(".eval.old-*"))
    assert len(kept) == 1 and [p.name for p in kept[0].iterdir()] == ["notes.txt"]
    assert str(kept[0]) in caplog.text
