"""MLflow tracking: one run per training, its adapter as artifact and one registered model version.

The default store is local: a sqlite database plus an artifact folder under the run home, so the
embedded default needs no server. Any tracking URI (a remote MLflow server) can be set in config.
TRL's own MLflow callback (``report_to=["mlflow"]``) logs per-step reward, KL, completion length and
entropy into the run opened here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from relsum.config import cfg
from relsum.paths import home

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class TrackingConfig:
    enabled: bool = cfg(True, help="Track runs in MLflow.")
    tracking_uri: str = cfg("", help="MLflow tracking URI (default: sqlite:///<RELSUM_HOME>/mlflow.db).")
    artifact_location: str = cfg("", help="Artifact root for new experiments (default: "
                                          "<RELSUM_HOME>/mlartifacts).")
    experiment: str = cfg("relsum", help="MLflow experiment name.")
    registered_model: str = cfg("relsum-summarizer", help="Registered model name; each training "
                                                          "run adds one version.")

    def resolved_uri(self) -> str:
        return self.tracking_uri or f"sqlite:///{home() / 'mlflow.db'}"

    def resolved_artifacts(self) -> str:
        return self.artifact_location or (home() / "mlartifacts").as_uri()


def client(config: TrackingConfig):
    """An ``MlflowClient`` on the config's tracking URI (also set as mlflow's global one), RELSUM_HOME
    made."""
    import mlflow

    home().mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(config.resolved_uri())
    return mlflow.MlflowClient(tracking_uri=config.resolved_uri())


def experiment_id(config: TrackingConfig) -> str:
    c = client(config)
    found = c.get_experiment_by_name(config.experiment)
    if found is not None:
        return found.experiment_id
    return c.create_experiment(config.experiment, artifact_location=config.resolved_artifacts())


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
    import mlflow

    clean = {k: float(v) for k, v in metrics.items() if v is not None and isinstance(v, int | float)}
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
    c = client(config)
    try:
        c.get_registered_model(config.registered_model)
    except Exception:  # noqa: BLE001 - MLflow raises its own RestException for 'not found'
        c.create_registered_model(config.registered_model)
    run = c.get_run(run_id)
    source = f"{run.info.artifact_uri.rstrip('/')}/{artifact_path}"
    version = c.create_model_version(config.registered_model, source=source, run_id=run_id, tags=tags or {})
    logger.info("registered %s version %s from %s", config.registered_model, version.version, source)
    return str(version.version)
