"""Replace a stage's whole output folder at once: write a staging sibling, then swap it in.

:func:`relsum.data.io.atomic_path` makes each *file* atomic, but a stage that writes several files that
belong together (``relsum evaluate``: scores, metrics, report, plots) and is killed half-way would leave
new files next to old ones, nothing marking the mix. :func:`staged_folder` writes every file into a fresh
staging folder beside ``out`` and, only when all of them are written, swaps it in with two renames:
``out`` -> ``.<name>.old-<random>``, staging -> ``out``. A reader sees the old set or the new set, never a
mix; a run killed before the swap (or a full disk) leaves ``out`` as it was. A kill between the two
renames leaves no ``out`` but the old folder beside it: the next :func:`staged_folder` on ``out`` puts it
back before anything else.

A swap replaces the *folder*, so a folder holding files the stage did not write (a user's notes, another
stage's output, ``out_dir=.``) is refused up front (:func:`check_replaceable`) rather than deleted with the
old outputs; the old folder is then emptied of the stage's own files only, and if something foreign
appeared there meanwhile it is kept, with a warning naming where. Concurrent writers of one ``out`` are
refused by a lock file beside it (``.<name>.lock``, released by the kernel when a process dies), which
also makes staging folders left by a killed run safe to remove.

The model folders (the reward model, ``grpo.save_adapter``, the tiny and GGUF policy builds) are swapped
in by the same :func:`staged_folder`, with ``owned=None``: the whole folder is the writer's (nothing is
checked for foreign files, the old folder is deleted whole) and ``lock=False`` (no lock file beside
them, as before; the recovery of killed runs needs the lock, so it is skipped). :func:`hold_lock` is the
one lock of the package (also the summarize job's ``out/.lock``).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import IO

from relsum.core.errors import EnvironmentProblem, InputError

logger = logging.getLogger(__name__)

_TEMP = re.compile(r"^\.(?P<base>.+)\.[^./]+\.tmp$")  # what atomic_path leaves when killed mid-write


def is_owned(name: str, owned: Collection[str]) -> bool:
    """True for a file the stage writes (or an :func:`~relsum.data.io.atomic_path` temp of one)."""
    if name in owned:
        return True
    temp = _TEMP.match(name)
    return bool(temp and temp.group("base") in owned)


def foreign_entries(out: Path, owned: Collection[str]) -> list[str]:
    """Names in ``out`` the stage did not write, sorted; ``[]`` when ``out`` does not exist."""
    if not out.is_dir():
        return []
    return sorted(entry.name for entry in out.iterdir() if not is_owned(entry.name, owned))


def is_model_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a saved model or adapter (what the ``owned=None`` writers write), so that
    replacing it whole deletes only a model, never a user's unrelated files."""
    return any((folder / name).is_file() for name in ("config.json", "adapter_config.json")) or any(
        folder.glob("*.safetensors"))


def check_replaceable(out: str | Path, owned: Collection[str] | None, stage: str) -> None:
    """Refuse an ``out`` that a swap could not replace without deleting what ``stage`` did not write
    (``owned=None``: a folder wholly the writer's, only checked for being a folder in a writable place)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{stage} output folder {out} is a file, not a folder")
    parent = out.absolute().parent
    existing = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise EnvironmentProblem(f"cannot create the {stage} output folder {out}: {existing} is a file")
    if parent.is_dir() and not os.access(parent, os.W_OK | os.X_OK):
        raise EnvironmentProblem(f"{stage} cannot write beside {out}: {parent} is not writable (the outputs "
                                 "are written there first and swapped in)")
    foreign = foreign_entries(out, owned) if owned is not None else []
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise InputError(f"{stage} output folder {out} holds files {stage} did not write ({shown}); its "
                         f"outputs replace the whole folder, so choose an empty folder or one only {stage} "
                         "writes to (nothing was changed)")


@contextlib.contextmanager
def named_oserror(path: str | Path) -> Iterator[None]:
    """Re-raise an ``OSError`` that names no file (pyarrow, matplotlib, a write on a full disk) with
    ``path``, so the one-line error says where."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None or exc.errno is None:
            raise
        raise type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno), str(path)) from exc


def hold_lock(path: Path, busy: str, *, unwritable: str | None = None) -> IO[str]:
    """Take the exclusive lock ``path`` without waiting; the returned handle holds it until closed.

    ``flock`` on an open file, so the kernel releases it when the holder dies (even killed) and a file
    left behind is no stale lock. Held elsewhere: :class:`EnvironmentProblem` ``busy``. The file cannot
    be created: with ``unwritable``, an :class:`EnvironmentProblem` naming it and saying ``unwritable``;
    without, the ``OSError`` as it is (the caller words it).
    """
    try:
        handle = open(path, "w")  # noqa: SIM115 - held until the caller closes it
    except OSError as exc:
        if unwritable is None:
            raise
        raise EnvironmentProblem(f"cannot create the lock file {path}: {exc.strerror or exc} "
                                 f"({unwritable})") from exc
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.close()
        raise EnvironmentProblem(busy) from exc
    return handle


def _lock(out: Path, stage: str) -> IO[str]:
    path = out.with_name(f".{out.name}.lock")
    return hold_lock(path, f"{out}: another {stage} run is writing there (it holds {path}); wait for it to "
                           "finish (a killed run releases it)")


def _siblings(out: Path, kind: str) -> list[Path]:
    return sorted(out.parent.glob(f".{glob_escape(out.name)}.{kind}-*"), key=lambda p: p.stat().st_mtime)


def glob_escape(name: str) -> str:
    """``name`` with glob metacharacters bracketed, so a folder called ``a[1]`` matches only itself."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def _discard(folder: Path, owned: Collection[str] | None) -> None:
    """Delete the stage's own entries of ``folder`` and the folder; anything foreign is kept, folder too
    (``owned=None``: the whole folder is the writer's and goes)."""
    if owned is None:
        shutil.rmtree(folder)
        return
    for entry in folder.iterdir():
        if is_owned(entry.name, owned):
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    try:
        folder.rmdir()
    except OSError:
        logger.warning("kept %s: it holds files the stage did not write (%s)", folder,
                       ", ".join(foreign_entries(folder, ())[:5]))


def _recover(out: Path, owned: Collection[str] | None) -> None:
    """Undo a swap killed between its two renames; drop staging folders of killed runs (lock held)."""
    for stage in _siblings(out, "staging"):
        logger.info("removing %s left by an interrupted run", stage)
        shutil.rmtree(stage, ignore_errors=True)
    olds = _siblings(out, "old")
    if not out.exists() and olds:
        logger.warning("%s is missing and %s is beside it (a run was killed while swapping); restoring it",
                       out, olds[-1])
        olds[-1].rename(out)
        olds = olds[:-1]
    for old in olds:
        _discard(old, owned)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def swap_in_folder(staging: Path, out: Path, owned: Collection[str] | None = None) -> None:
    """Replace ``out`` by the complete folder ``staging`` (a sibling) with two renames.

    ``out`` -> ``.<name>.old-<random>``, ``staging`` -> ``out``: a reader sees the old folder or the new one,
    never a mix or a half-written one. If the second rename fails the old folder is put back. The old
    folder is then deleted (``owned``: only those entries, anything foreign is kept with a warning).
    """
    old: Path | None = None
    try:
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            out.rename(old)  # onto the empty folder mkdtemp made
        staging.rename(out)
    except BaseException:
        if old is not None and old.exists() and not out.exists():
            old.rename(out)  # the second rename failed: put the old folder back
        elif old is not None and old.exists() and not any(old.iterdir()):
            old.rmdir()  # the first rename failed: drop the empty placeholder
        raise
    _fsync_dir(out.parent)
    if old is not None:
        _discard(old, owned)


@contextlib.contextmanager
def staged_folder(out: str | Path, owned: Collection[str] | None, stage: str, *, lock: bool = True,
                  keep: Callable[[Path], bool] | None = None,
                  ours: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Yield an empty staging folder beside ``out``; when the block ends without error it replaces ``out``.

    ``owned`` names every file the stage may write (a staged file that is not in it is a bug and raises);
    ``None``: the folder is wholly the writer's (a model folder), nothing is checked for foreign files and
    the old folder is deleted whole. On an error in the block the staging folder is deleted and ``out``
    is untouched. ``out`` must pass :func:`check_replaceable` (under the lock when ``lock``).
    ``lock=False``: no lock file beside ``out`` and no recovery of killed runs (without the lock another
    process's staging folder cannot be told from a dead one's). ``keep(out)``, asked just before the
    swap: true means another process finished ``out`` meanwhile, so it is kept and the staged copy dropped.
    ``ours(out)``, asked before anything is written: false for a non-empty ``out`` refuses the stage (an
    ``InputError``, nothing changed), so a folder replaced whole is always one the stage itself wrote (model
    writers pass :func:`is_model_folder`).
    """
    out = Path(out)
    if out.is_symlink():
        out = out.resolve()  # swap the folder the link points to, keep the link
    out.parent.mkdir(parents=True, exist_ok=True)
    handle = _lock(out, stage) if lock else None
    try:
        if lock:
            _recover(out, owned)
        check_replaceable(out, owned, stage)
        if ours is not None and out.is_dir() and any(out.iterdir()) and not ours(out):
            raise InputError(f"{stage} output folder {out} holds files but not what {stage} writes (e.g. no "
                             "config.json, adapter_config.json or *.safetensors); it would be replaced whole,"
                             " so choose an empty folder or one this stage wrote (nothing was changed)")
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
        try:
            yield staging
            stray = foreign_entries(staging, owned) if owned is not None else []
            if stray:
                raise RuntimeError(f"{stage} wrote files it does not declare as its own: {stray}")
            if keep is not None and keep(out):
                logger.info("%s was finished by another process meanwhile; keeping it", out)
                shutil.rmtree(staging, ignore_errors=True)
                return
            os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; the output gets the usual mode
            swap_in_folder(staging, out, owned)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    finally:
        if handle is not None:
            handle.close()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
