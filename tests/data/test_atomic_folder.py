"""The one folder swap (``staged_folder`` / ``swap_in_folder``) as the model folders use it (``owned=None``,
``lock=False``, ``keep``), and the one lock (``hold_lock``) that evaluate and the summarize job share."""

from __future__ import annotations

import os
import stat

import pytest

from relsum.core.errors import EnvironmentProblem
from relsum.data.atomic_dir import hold_lock, staged_folder, swap_in_folder


def _tree(folder):
    return {p.relative_to(folder).as_posix(): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_model_folder_is_replaced_whole_and_leaves_nothing_beside(tmp_path):
    out = tmp_path / "model"
    (out / "sub").mkdir(parents=True)
    (out / "old.bin").write_text("old")
    (out / "sub" / "notes.txt").write_text("any file: the folder is wholly the writer's")
    with staged_folder(out, None, "model save", lock=False) as staging:
        assert staging.parent == tmp_path and staging.name.startswith(".model.staging-")
        (staging / "new.bin").write_text("new")
    assert _tree(out) == {"new.bin": "new"}
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no lock file, old or staging folder
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~mask  # not mkdtemp's 0700


def test_error_in_the_block_leaves_the_old_folder(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "old.bin").write_text("old")
    with pytest.raises(RuntimeError, match="killed"), staged_folder(out, None, "save", lock=False) as st:
        (st / "new.bin").write_text("half")
        raise RuntimeError("killed")
    assert _tree(out) == {"old.bin": "old"} and [p.name for p in tmp_path.iterdir()] == ["model"]


def test_keep_drops_the_staged_copy_when_another_process_finished_first(tmp_path):
    out = tmp_path / "converted"
    with staged_folder(out, None, "conversion", lock=False, keep=lambda f: (f / "done").exists()) as st:
        (st / "mine").write_text("mine")
        out.mkdir()  # the other process's finished folder appears meanwhile
        (out / "done").write_text("theirs")
    assert _tree(out) == {"done": "theirs"} and [p.name for p in tmp_path.iterdir()] == ["converted"]
    with staged_folder(out, None, "conversion", lock=False, keep=lambda f: False) as st:
        (st / "mine").write_text("mine")
    assert _tree(out) == {"mine": "mine"}


def test_failed_second_rename_puts_the_old_folder_back(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "old.bin").write_text("old")
    with pytest.raises(FileNotFoundError):
        swap_in_folder(tmp_path / "vanished", out)  # the staging folder is gone: the second rename fails
    assert _tree(out) == {"old.bin": "old"} and [p.name for p in tmp_path.iterdir()] == ["model"]


def test_owned_swap_keeps_foreign_files_of_the_old_folder(tmp_path, caplog):
    out, staging = tmp_path / "out", tmp_path / "staging"
    out.mkdir()
    staging.mkdir()
    (out / "metrics.json").write_text("old")
    (out / "notes.txt").write_text("the user's")
    (staging / "metrics.json").write_text("new")
    swap_in_folder(staging, out, owned={"metrics.json"})
    assert _tree(out) == {"metrics.json": "new"}
    kept = [p for p in tmp_path.iterdir() if p.name.startswith(".out.old-")]
    assert len(kept) == 1 and _tree(kept[0]) == {"notes.txt": "the user's"} and "notes.txt" in caplog.text


def test_locked_model_folder_is_restored_after_a_kill_between_the_renames(tmp_path):
    out = tmp_path / "model"
    old = tmp_path / ".model.old-abc"
    old.mkdir()
    (old / "weights").write_text("old")  # what a kill between the two renames leaves
    with staged_folder(out, None, "model save") as staging:
        assert _tree(out) == {"weights": "old"}  # put back before anything else
        (staging / "weights").write_text("new")
    assert _tree(out) == {"weights": "new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.lock", "model"]


def test_hold_lock_refuses_a_second_holder_until_released(tmp_path):
    path = tmp_path / ".lock"
    first = hold_lock(path, "busy: someone holds it")
    with pytest.raises(EnvironmentProblem, match="^busy: someone holds it$"):
        hold_lock(path, "busy: someone holds it")
    first.close()
    hold_lock(path, "busy").close()  # released: free again


def test_hold_lock_on_an_unwritable_place(tmp_path):
    missing = tmp_path / "no such folder" / ".lock"
    with pytest.raises(EnvironmentProblem, match=r"cannot create the lock file .*\(the folder must be w"):
        hold_lock(missing, "busy", unwritable="the folder must be writable")
    with pytest.raises(FileNotFoundError):  # without ``unwritable`` the caller words the OSError
        hold_lock(missing, "busy")


def test_a_model_writer_never_replaces_a_folder_without_a_model(tmp_path):
    from relsum.core.errors import InputError
    from relsum.data.atomic_dir import is_model_folder, staged_folder

    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "thesis.txt").write_text("not relsum's")
    with pytest.raises(InputError, match="holds files but not what reward model writes"), \
            staged_folder(mine, None, "reward model", lock=False,
                         ours=is_model_folder) as staging:
        (staging / "config.json").write_text("{}")
    assert (mine / "thesis.txt").read_text() == "not relsum's" and not (mine / "config.json").exists()
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")  # a model folder (an earlier build) is replaced whole
    with staged_folder(model, None, "reward model", lock=False, ours=is_model_folder) as staging:
        (staging / "model.safetensors").write_bytes(b"x")
    assert sorted(p.name for p in model.iterdir()) == ["model.safetensors"]
