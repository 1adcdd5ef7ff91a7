"""The model lifecycle's configs: MLflow tracking, the promotion (champion/challenger) gate and the
per-summary deployment gate.

Standard library and :mod:`relsum.core.config` only: stage configs embed these sections (``train``,
``compare``, ``ablate``, the DAG config), and ``relsum <stage> --help`` builds every default config without
loading MLflow, numpy or pandas. The code that reads them: :mod:`relsum.lifecycle.tracking`
(:class:`TrackingConfig`), :mod:`relsum.lifecycle.registry` (:class:`PromotionGateConfig`) and
:mod:`relsum.lifecycle.gate` (:class:`SummaryGateConfig`).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from relsum.core.config import cfg
from relsum.core.paths import home


@dataclasses.dataclass
class TrackingConfig:
    enabled: bool = cfg(True, help="Track runs in MLflow.")
    tracking_uri: str = cfg("", help="MLflow tracking URI (default: sqlite:///<RELSUM_HOME>/mlflow.db).")
    artifact_location: str = cfg("", help="Artifact root for new experiments (default: "
                                          "<RELSUM_HOME>/mlartifacts).")
    experiment: str = cfg("relsum", help="MLflow experiment name.")
    registered_model: str = cfg("relsum-summarizer", help="Registered model name; each training "
                                                          "run adds one version.")
    lock_wait_s: float = cfg(60.0, help="How long to wait, retrying, for a local SQLite store that another "
                                        "process has locked before stopping with an error.")

    def __post_init__(self):
        if not self.lock_wait_s >= 0:
            raise ValueError("lock_wait_s must be >= 0")

    def resolved_uri(self) -> str:
        return self.tracking_uri or f"sqlite:///{home() / 'mlflow.db'}"

    def resolved_artifacts(self) -> str:
        return self.artifact_location or (home() / "mlartifacts").as_uri()


@dataclasses.dataclass
class PromotionGateConfig:
    alias: str = cfg("champion", help="Registered-model alias of the serving model.")
    min_ndcg_gain: float = cfg(0.0, help="NDCG@5 must exceed the champion's by more than this "
                                         "(absolute), full and tail.")
    r_at_p_tolerance: float = cfg(0.01, help="Largest allowed R@90P loss (absolute) against the "
                                             "champion, full and tail.")

    def __post_init__(self):
        if self.min_ndcg_gain < 0 or self.r_at_p_tolerance < 0:
            raise ValueError("min_ndcg_gain and r_at_p_tolerance must be >= 0")
        if not self.alias.strip():
            raise ValueError("alias must be a non-empty name")


@dataclasses.dataclass
class SummaryGateConfig:
    margin: float = cfg(0.0, help="keep a summary when r(q,[t;s]) >= r(q,t) - margin (see rule)")
    rule: Literal["mean", "all"] = cfg("mean", help="mean: per-product mean difference >= "
                                                    "-margin; all: every query")
    keep_unjudged: bool = cfg(False, help="keep summaries of products that have no held-out query")

    def __post_init__(self) -> None:
        if self.margin < 0:
            raise ValueError("gate margin must be >= 0")
        if self.rule not in ("mean", "all"):
            raise ValueError("gate rule must be 'mean' or 'all'")
