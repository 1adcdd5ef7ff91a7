"""The one way stages build a scorer: load it, then gate and select its inference path.

Why a factory instead of doing this in ``Scorer.__init__``: the fidelity gate and ``path: auto`` need a
loaded scorer (its fp32 reference runner, tokenization and batching) and then choose what it runs on;
keeping that choice here means :mod:`relsum.scoring.scorer` imports neither
:mod:`relsum.scoring.fidelity` nor :mod:`relsum.scoring.auto_path`, and those import no scorer module.

Every stage calls ``make_scorer(model_dir, config.scorer)`` with its config's ``scorer`` section, so a
setting such as ``scorer.max_tokens_per_batch`` or ``scorer.path`` in a stage YAML reaches the scorer
that stage scores with.
"""

from __future__ import annotations

import logging
from pathlib import Path

from relsum.scoring.auto_path import resolve_auto
from relsum.scoring.config import ScorerConfig
from relsum.scoring.fidelity import ensure_gate
from relsum.scoring.scorer import Scorer

logger = logging.getLogger(__name__)


def make_scorer(model_dir: str | Path, config: ScorerConfig | None = None) -> Scorer:
    """A :class:`Scorer` of ``model_dir`` on ``config.path``, ready to score.

    ``fp32`` is used as loaded. ``auto`` first resolves to the fastest gate-passing path here (measured
    once per model, CPU and thread count, then cached). Any other path must pass the fidelity gate
    against fp32 (cached per fingerprint) or :class:`~relsum.scoring.fidelity.FidelityGateError` is
    raised; :class:`~relsum.scoring.runners.PathUnavailableError` if the path cannot run here.
    """
    scorer = Scorer(model_dir, config)
    path, auto_choice = scorer.config.path, None
    if path == "fp32":
        return scorer
    if path == "auto":
        auto_choice = resolve_auto(scorer)
        path = auto_choice["chosen"]
    if path == "fp32":
        scorer.use_path(path, scorer.fp32_runner, auto_choice=auto_choice)
        return scorer
    runner = scorer.build_path_runner(path)
    scorer.use_path(path, runner, gate=ensure_gate(scorer, runner, path), auto_choice=auto_choice)
    logger.info("scorer %s on path %s", scorer.model_dir.name, path)
    return scorer
