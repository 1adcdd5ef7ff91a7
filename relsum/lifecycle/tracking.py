"""MLflow tracking: one run per training, its adapter as artifact and one registered model version.

The default store is local: a sqlite database plus an artifact folder under the run home, so the
embedded default needs no server. Any tracking URI (a remote MLflow server) can be set in config.
TRL's own MLflow callback (``report_to=["mlflow"]``) logs per-step reward, KL, completion length and
entropy into the run opened here.

A local SQLite store is probed with the standard library before MLflow opens it (:func:`check_store`):
MLflow would create a missing database (so ``relsum compare`` on an empty home left an empty
``mlflow.db`` behind), fails a garbled file with a SQLAlchemy traceback, and waits out another process's
lock for 20 s per statement before a traceback. The probe names the file in one line, never creates it
for a reader, and waits for a lock at most ``lock_wait_s`` before saying who is in the way.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from relsum.core.errors import EnvironmentProblem, InputError
from relsum.core.paths import home
from relsum.lifecycle.config import TrackingConfig

logger = logging.getLogger(__name__)


SQLITE_HEADER = b"SQLite format 3\x00"


def sqlite_file(config: TrackingConfig) -> Path | None:
    """The database file of a local ``sqlite:///`` tracking URI; ``None`` for a server or an in-memory DB."""
    uri = config.resolved_uri()
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def _probe(path: Path, write: bool) -> tuple[bool, str | None, list[str]]:
    """(locked, other problem, table names) of one attempt to read (or reserve, ``write``) the database."""
    import sqlite3
    from urllib.parse import quote

    try:
        con = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode={'rw' if write else 'ro'}", uri=True,
                              timeout=0, isolation_level=None)
    except sqlite3.Error as exc:
        return False, str(exc), []
    try:
        if write:
            con.execute("BEGIN IMMEDIATE")  # what a writer needs: fails while another process writes
            con.execute("ROLLBACK")
        tables = [row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    except sqlite3.Error as exc:
        text = str(exc)
        return "locked" in text or "busy" in text, text, []
    finally:
        con.close()
    return False, None, tables


def check_store(config: TrackingConfig, *, write: bool = False, must_exist: bool = False) -> None:
    """Refuse, in one line, a local SQLite store that MLflow could not use; a no-op for a server URI.

    ``must_exist`` (readers: ``relsum compare``): a missing file is an :class:`InputError` and is not
    created. A file that is not an SQLite database, is damaged or is another program's database is an
    :class:`EnvironmentProblem`. A database locked by another process (``write``: also one being written)
    is retried with growing pauses for ``config.lock_wait_s`` seconds, then an :class:`EnvironmentProblem`.
    """
    path = sqlite_file(config)
    if path is None:
        return
    if not path.exists():
        if must_exist:
            raise InputError(f"no MLflow store at {path}: nothing has been tracked with this RELSUM_HOME yet "
                             "(run `relsum train` or `relsum demo` first, or set tracking.tracking_uri)")
        return
    if not path.is_file():
        raise EnvironmentProblem(f"MLflow store {path} is not a file")
    with open(path, "rb") as f:
        head = f.read(len(SQLITE_HEADER))
    if head and head != SQLITE_HEADER:
        raise EnvironmentProblem(f"MLflow store {path} is not an SQLite database (garbled, or another kind "
                                 "of file); move it aside to start a new store, or set tracking.tracking_uri")
    deadline, pause = time.monotonic() + config.lock_wait_s, 0.2
    while True:
        locked, problem, tables = _probe(path, write)
        if not locked:
            break
        left = deadline - time.monotonic()
        if left <= 0:
            raise EnvironmentProblem(f"MLflow store {path} is locked by another process ({problem}; "
                                     f"waited {config.lock_wait_s:g} s, tracking.lock_wait_s); rerun when it "
                                     "is done")
        logger.info("MLflow store %s is locked by another process; retrying for up to %.0f s", path, left)
        time.sleep(min(pause, left))
        pause = min(2 * pause, 5.0)
    if problem is not None:
        raise EnvironmentProblem(f"MLflow store {path} cannot be read as a database ({problem}); move it "
                                 "aside to start a new store, or set tracking.tracking_uri")
    if tables and "experiments" not in tables:
        raise EnvironmentProblem(f"{path} is an SQLite database but not an MLflow store (tables: "
                                 f"{', '.join(sorted(tables)[:5])}); set tracking.tracking_uri to another "
                                 "file")


def store_problem(exc: BaseException, config: TrackingConfig) -> EnvironmentProblem | None:
    """An MLflow / SQLAlchemy failure that means the store, not relsum, is at fault, as one line; else None.

    For errors after :func:`check_store` passed: a lock taken meanwhile outlasts MLflow's own 20 s wait,
    or the file is damaged beyond its first page."""
    text = str(exc)
    for marker, what in (("database is locked", "is locked by another process"),
                         ("file is not a database", "is not an SQLite database"),
                         ("database disk image is malformed", "is damaged (disk image is malformed)")):
        if marker in text:
            return EnvironmentProblem(f"MLflow store {sqlite_file(config) or config.resolved_uri()} {what}; "
                                      "rerun when the other process is done, or move a damaged file aside")
    return None


def client(config: TrackingConfig, *, write: bool = False, must_exist: bool = False):
    """An ``MlflowClient`` on the config's tracking URI (also set as mlflow's global one), RELSUM_HOME
    made (unless ``must_exist``); a local SQLite store passes :func:`check_store` first."""
    import mlflow

    check_store(config, write=write, must_exist=must_exist)
    if not must_exist:
        home().mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(config.resolved_uri())
    return mlflow.MlflowClient(tracking_uri=config.resolved_uri())


def experiment_id(config: TrackingConfig) -> str:
    """The experiment's id, created when missing; the store is checked as a writer's (lock wait)."""
    c = client(config, write=True)
    try:
        found = c.get_experiment_by_name(config.experiment)
        if found is not None:
            return found.experiment_id
        return c.create_experiment(config.experiment, artifact_location=config.resolved_artifacts())
    except Exception as exc:
        problem = store_problem(exc, config)
        if problem is None:
            raise
        raise problem from exc


@contextlib.contextmanager
def tracked_run(config: TrackingConfig, run_name: str, tags: dict[str, str] | None = None) -> Iterator[Any]:
    """An active MLflow run (or ``None`` when tracking is off); TRL's callback logs into it."""
    if not config.enabled:
        yield None
        return
    import mlflow

    exp = experiment_id(config)
    os.environ["MLFLOW_TRACKING_URI"] = config.resolved_uri()
    os.environ["MLFLOW_EXPERIMENT_NAME"] = config.experiment
    with mlflow.start_run(experiment_id=exp, run_name=run_name, tags=tags or {}) as run:
        logger.info("MLflow run %s (%s) in %s", run.info.run_id, run_name, config.resolved_uri())
        yield run


def log_params(params: dict[str, Any]) -> None:
    import mlflow

    # MLflow caps param values at 6000 chars; long values are configs that are logged as artifacts too.
    mlflow.log_params({k: str(v)[:500] for k, v in params.items()})


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    """Log to the active run; keys go in as :func:`relsum.metrics.names.mlflow_key` spells them."""
    import mlflow

    from relsum.metrics.names import mlflow_key

    clean = {mlflow_key(k): float(v) for k, v in metrics.items()
             if v is not None and isinstance(v, int | float)}
    mlflow.log_metrics(clean, step=step)


def log_json(obj: Any, name: str) -> None:
    import mlflow

    mlflow.log_text(json.dumps(obj, indent=2, default=str), name)


def log_artifacts(path: str | Path, artifact_path: str | None = None) -> None:
    import mlflow

    path = Path(path)
    if path.is_dir():
        mlflow.log_artifacts(str(path), artifact_path=artifact_path)
    elif path.exists():
        mlflow.log_artifact(str(path), artifact_path=artifact_path)


def register_adapter(config: TrackingConfig, run_id: str, artifact_path: str = "adapter",
                     tags: dict[str, str] | None = None) -> str:
    """Create one registered model version whose source is the run's adapter folder; returns the version."""
    c = client(config, write=True)
    try:
        c.get_registered_model(config.registered_model)
    except Exception:  # noqa: BLE001 - MLflow raises its own RestException for 'not found'
        c.create_registered_model(config.registered_model)
    run = c.get_run(run_id)
    source = f"{run.info.artifact_uri.rstrip('/')}/{artifact_path}"
    version = c.create_model_version(config.registered_model, source=source, run_id=run_id, tags=tags or {})
    logger.info("registered %s version %s from %s", config.registered_model, version.version, source)
    return str(version.version)
