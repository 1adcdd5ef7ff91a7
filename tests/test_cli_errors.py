"""CLI errors from the user's input or environment: one line, exit 2, no work done; bugs keep tracebacks."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from relsum.cli import main, user_error_line
from relsum.core.errors import EnvironmentProblem, InputError
from relsum.summarize.output import lock


@pytest.fixture
def catalog(tmp_path):
    path = tmp_path / "catalog.csv"
    pd.DataFrame({"product_id": ["p1"], "title": ["Cordless drill"],
                  "description": ["18 V"]}).to_csv(path, index=False)
    return path


@pytest.fixture
def model(tmp_path):
    """A folder that passes the up-front weight check (the run fails later, which these tests never reach)."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "mistral"}))
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    # a well-formed safetensors file (8-byte header length, JSON header, data): passes the header check
    (folder / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 4)
    return folder


def _error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    return lines[0]


def test_pickle_model_is_refused_before_any_work(tmp_path, catalog, model, capsys):
    from relsum.scoring.scorer import Scorer

    (model / "model.safetensors").unlink()
    (model / "pytorch_model.bin").write_bytes(b"not really a pickle")
    out = tmp_path / "out"
    assert main(["summarize", "--catalog", str(catalog), "--model", str(model), "--out", str(out)]) == 2
    line = _error_line(capsys)
    assert line.startswith("relsum summarize: error:") and "pickle weights (pytorch_model.bin)" in line
    assert str(model) in line and not out.exists()  # refused before the plan, the lock, the output folder
    with pytest.raises(InputError) as scorer_error:  # the scorer refuses with the same words
        Scorer(model)
    assert str(scorer_error.value).split(" folder ", 1)[1] == line.split(" folder ", 1)[1]


def test_pickle_adapter_is_refused_before_any_work(tmp_path, catalog, model, capsys):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.bin").write_bytes(b"pickle")
    out = tmp_path / "out"
    assert main(["summarize", "--catalog", str(catalog), "--model", str(model), "--adapter", str(adapter),
                 "--out", str(out)]) == 2
    line = _error_line(capsys)
    assert f"adapter folder {adapter} has only pickle weights (adapter_model.bin)" in line
    assert not out.exists()


def test_verbose_keeps_the_traceback(tmp_path, catalog, model):
    shutil.rmtree(model)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        main(["-v", "summarize", "--catalog", str(catalog), "--model", str(model), "--out",
              str(tmp_path / "o")])


def test_held_lock_is_one_line(tmp_path, catalog, model, capsys):
    out = tmp_path / "out"
    out.mkdir()
    handle = lock(out)
    try:
        assert main(["summarize", "--catalog", str(catalog), "--model", str(model), "--out", str(out)]) == 2
    finally:
        handle.close()
    line = _error_line(capsys)
    assert "another summarize job holds the lock" in line and str(out / ".lock") in line


def test_output_folder_that_is_a_file_or_under_a_file(tmp_path, catalog, model, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["summarize", "--catalog", str(catalog), "--model", str(model), "--out",
                 str(blocker / "out")]) == 2
    line = _error_line(capsys)
    assert "cannot create the summaries output folder" in line and str(blocker) in line
    assert main(["evaluate", "--golden", str(tmp_path), "--out", str(blocker / "eval")]) == 2
    assert str(blocker) in _error_line(capsys)
    assert blocker.read_text() == "x"


def test_missing_config_file_and_bad_summaries_flag(tmp_path, capsys):
    assert main(["summarize", "--config", str(tmp_path / "nope.yaml")]) == 2
    line = _error_line(capsys)
    assert "No such file or directory" in line and "nope.yaml" in line
    assert main(["evaluate", "--summaries", "no-equals-sign"]) == 2
    assert "--summaries expects NAME=FILE" in _error_line(capsys)


def test_which_errors_are_user_errors():
    assert user_error_line(PermissionError(13, "Permission denied",
                                           "/out/x.tmp")) == "Permission denied: /out/x.tmp"
    assert user_error_line(IsADirectoryError(21, "Is a directory", "/a", None,
                                             "/b")) == "Is a directory: /a -> /b"
    assert user_error_line(EnvironmentProblem("lock held\nby pid 3")) == "lock held by pid 3"
    from relsum.core.config import ConfigError
    from relsum.scoring.fidelity import FidelityGateError
    from relsum.scoring.runners import PathUnavailableError

    for exc in (ConfigError("x"), PathUnavailableError("x"), FidelityGateError("x")):
        assert user_error_line(exc) == "x"
        # old `except RuntimeError/ValueError` still catch them
        assert isinstance(exc, ValueError | RuntimeError)
    for bug in (ValueError("x"), RuntimeError("CUDA "
                                              "error: device-side assert"), KeyError("k"), OSError(5, "I/O")):
        assert user_error_line(bug) is None  # keeps its traceback
