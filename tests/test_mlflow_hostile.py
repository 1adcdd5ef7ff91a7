"""Hostile MLflow stores (issue 23, case 16): missing, garbled, foreign or locked ``mlflow.db``, unknown runs
and experiments. Each is one line on stderr and exit 2; a reader never creates a store."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from relsum.cli import main
from relsum.core.errors import EnvironmentProblem
from relsum.lifecycle import tracking
from relsum.lifecycle.config import TrackingConfig

HOLD = ("import sqlite3, sys\n"
        "con = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "con.execute(sys.argv[2])\n"
        "print('locked', flush=True)\n"
        "sys.stdin.readline()\n")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A real SQLite store: experiment ``relsum`` with one run, experiment ``empty`` with none."""
    db = tmp_path_factory.mktemp("store") / "mlflow.db"
    config = TrackingConfig(tracking_uri=f"sqlite:///{db}", experiment="relsum")
    with tracking.tracked_run(config, "only-run") as active:
        tracking.log_metrics({"x": 1.0})
    tracking.client(config).create_experiment("empty")
    return db, active.info.run_id


def _compare(capsys, *args: str) -> tuple[int, list[str]]:
    code = main(["compare", *args])
    return code, capsys.readouterr().err.strip().splitlines()


def _hold(db, statement: str = "BEGIN EXCLUSIVE") -> subprocess.Popen:
    """Another process holding a lock on ``db`` until its stdin is closed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(db), statement], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _release(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    proc.wait(timeout=30)


def test_compare_on_an_empty_home_is_one_line_and_creates_nothing(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    monkeypatch.setenv("RELSUM_HOME", str(home))
    code, err = _compare(capsys)
    assert code == 2 and len(err) == 1
    assert err[0].startswith("relsum compare: error: no MLflow store at ")
    assert str(home / "mlflow.db") in err[0]
    assert not home.exists()  # neither the home nor an empty mlflow.db


def _not_sqlite(db):
    db.write_bytes(b"this is not a database\n" * 200)


def _damaged(db):
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE experiments (x)")
    con.commit()
    con.close()
    data = bytearray(db.read_bytes())
    data[16:200] = b"\xff" * 184  # header kept, page size and schema garbled
    db.write_bytes(bytes(data))


def _foreign(db):
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE invoices (id INTEGER)")
    con.commit()
    con.close()


@pytest.mark.parametrize(("damage", "message"), [
    (_not_sqlite, "is not an SQLite database"),
    (_damaged, "cannot be read as a database"),
    (_foreign, "is an SQLite database but not an MLflow store (tables: invoices)"),
])
def test_garbled_or_foreign_store_is_one_line_and_left_alone(tmp_path, monkeypatch, capsys, damage, message):
    monkeypatch.setenv("RELSUM_HOME", str(tmp_path))
    db = tmp_path / "mlflow.db"
    damage(db)
    before = db.read_bytes()
    code, err = _compare(capsys)
    assert code == 2 and len(err) == 1 and message in err[0] and str(db) in err[0]
    assert db.read_bytes() == before  # MLflow never opened it (no migration, no new tables)


def test_unknown_runs_experiments_and_empty_experiment(store, capsys):
    db, run_id = store
    uri = f"tracking.tracking_uri=sqlite:///{db}"
    code, err = _compare(capsys, uri, "--runs", run_id, "f" * 32, "nope")  # overrides before nargs="+"
    assert code == 2 and len(err) == 1
    assert f"unknown MLflow run id(s) {'f' * 32}, nope in sqlite:///{db}" in err[0]
    code, err = _compare(capsys, "--experiment", "missing", uri)
    assert code == 2 and len(err) == 1
    assert "no MLflow experiment 'missing'" in err[0] and "'relsum'" in err[0] and "'empty'" in err[0]
    code, err = _compare(capsys, "--experiment", "empty", uri)
    assert code == 2 and len(err) == 1 and "MLflow experiment 'empty'" in err[0] and "has no runs" in err[0]
    assert main(["compare", uri, "--runs", run_id]) == 0


@pytest.mark.slow
def test_locked_store_waits_then_one_line_and_retries_until_free(store, capsys):
    db, run_id = store
    uri = f"tracking.tracking_uri=sqlite:///{db}"
    holder = _hold(db)
    try:
        start = time.monotonic()
        code, err = _compare(capsys, uri, "tracking.lock_wait_s=1")
        waited = time.monotonic() - start
    finally:
        _release(holder)
    assert code == 2 and len(err) == 1 and "is locked by another process" in err[0] and str(db) in err[0]
    assert "waited 1 s" in err[0] and waited < 15  # the bounded wait, not MLflow's 20 s per statement

    holder = _hold(db)
    threading.Timer(1.5, holder.stdin.close).start()  # the other process finishes while compare waits
    start = time.monotonic()
    config = TrackingConfig(tracking_uri=f"sqlite:///{db}", lock_wait_s=60)
    from relsum.pipelines.compare import collect
    from relsum.pipelines.configs import CompareConfig

    records = collect(CompareConfig(tracking=config))
    holder.wait(timeout=30)
    assert [r["run_id"] for r in records] == [run_id] and time.monotonic() - start >= 1.4


def test_train_start_on_a_store_being_written_is_one_line(store):
    """``relsum train`` opens its run through ``tracked_run``: another writer's lock is waited for, then
    refused with the file named (a reader lock would not block it: a write lock is probed)."""
    db, _ = store
    config = TrackingConfig(tracking_uri=f"sqlite:///{db}", lock_wait_s=0.5)
    holder = _hold(db, "BEGIN IMMEDIATE")  # a writer mid-transaction: readers still read
    try:
        tracking.check_store(config)  # a reader passes
        with (pytest.raises(EnvironmentProblem, match=r"is locked by another process .*waited 0\.5 s"),
              tracking.tracked_run(config, "blocked")):
            pass
    finally:
        _release(holder)


def test_lock_wait_must_not_be_negative():
    with pytest.raises(ValueError, match="lock_wait_s"):
        TrackingConfig(lock_wait_s=-1)
