"""Stage ``relsum reward-model check``: does the judge read text? Run it before training a policy.

Loads the golden set and the ranker (the bootstrap or a team's own local cross-encoder folder), runs
:func:`relsum.evaluation.ranker_check.check_ranker` with the one scorer
(:func:`relsum.scoring.factory.make_scorer`), writes ``<out_dir>/reward_model_check.json`` atomically
and, when an MLflow run is active in this process (a DAG task or a notebook that opened one), logs its
metrics and the JSON there. It never opens a run itself: the check looks at a model, it trains nothing.
"""

from __future__ import annotations

import logging
import sys

from relsum.evaluation.ranker_check import CheckResult, format_check
from relsum.pipelines.configs import RewardModelCheckConfig
from relsum.scoring.protocol import RelevanceScorer

logger = logging.getLogger(__name__)

RESULT_FILE = "reward_model_check.json"

__all__ = ["RESULT_FILE", "format_check", "log_to_active_run", "run"]


def log_to_active_run(result: CheckResult) -> str | None:
    """Log the check's metrics and JSON into the active MLflow run, if any; its run id, else None.

    A run can only be active if this process imported mlflow, so a process that never did is not made to
    import it (1-2 s) just to learn there is none."""
    mlflow = sys.modules.get("mlflow")
    run = mlflow.active_run() if mlflow is not None else None
    if run is None:
        return None
    from relsum.lifecycle import tracking

    tracking.log_metrics(result.mlflow_metrics())
    tracking.log_json(result.to_dict(), RESULT_FILE)
    logger.info("ranker check logged to MLflow run %s", run.info.run_id)
    return run.info.run_id


def run(config: RewardModelCheckConfig, scorer: RelevanceScorer | None = None) -> CheckResult:
    """Check ``config.reward_model`` (the bootstrap when empty) on ``config.golden``; write and log it."""
    from relsum.data.golden import load_golden
    from relsum.data.io import write_json_atomic
    from relsum.evaluation.ranker_check import check_ranker
    from relsum.scoring.factory import make_scorer

    from .reward_model import ensure_reward_model

    golden = load_golden(config.golden)
    rejected = {t: int(len(r)) for t, r in golden.rejects.items() if len(r)}
    if rejected:
        logger.warning("golden set rows rejected: %s (run `relsum validate` for reasons)", rejected)
    if scorer is None:
        scorer = make_scorer(ensure_reward_model(config.reward_model), config.scorer)
    result = check_ranker(golden, scorer, lead_words=config.lead_words, k=config.k, n_boot=config.n_boot,
                          seed=config.seed, foreign_tolerance=config.foreign_tolerance)
    out = config.resolved_out_dir()
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic({**result.to_dict(), "reward_model": config.reward_model, "golden": config.golden,
                       "golden_rejects": rejected}, out / RESULT_FILE)
    log_to_active_run(result)
    return result
