"""Stage: bootstrap a cross-encoder reward model from the bundled MiniLM weights.

For users without a ranker of their own: trains on graded judgments (a golden-layout folder) with
sentence-transformers' CrossEncoder training and reports held-out NDCG@5 against the untrained start.
"""

from __future__ import annotations

import logging

import pandas as pd

from relsum.paths import home
from relsum.pipelines.configs import RewardModelStageConfig

logger = logging.getLogger(__name__)


def judged_pairs(folder: str) -> pd.DataFrame:
    """(query_id, query, title, text, label) for every valid judgment of a golden-layout folder."""
    from relsum.data.golden import load_golden

    golden = load_golden(folder)
    for table, rejects in golden.rejects.items():
        if len(rejects):
            logger.warning("%s: %d %s rows rejected (see validate)", folder, len(rejects), table)
    pairs = golden.judgments.merge(golden.queries[["query_id", "query"]], on="query_id")
    return pairs.merge(golden.catalog[["product_id", "title", "text"]], on="product_id")


def run(config: RewardModelStageConfig) -> dict:
    from relsum.scoring.reward_model import RewardModelConfig, train_reward_model

    out_dir = config.resolved_out_dir()
    rm_config = RewardModelConfig(
        base_model=config.base_model, max_length=config.max_length, epochs=config.epochs,
        batch_size=config.batch_size, learning_rate=config.learning_rate,
        max_train_pairs=config.max_train_pairs, seed=config.seed, out_dir=str(out_dir))
    train, eval_ = judged_pairs(config.train_dir), judged_pairs(config.eval_dir)
    logger.info("training reward model on %d pairs, evaluating on %d held-out pairs", len(train), len(eval_))
    metrics = train_reward_model(train, eval_, rm_config)
    metrics["out_dir"] = str(out_dir)
    return metrics


def ensure_reward_model(path: str = "") -> str:
    """``path`` if given, else the bootstrap model under the run home, training it once if missing."""
    if path:
        return path
    default = home() / "reward_model"
    if (default / "model.safetensors").exists() or (default / "config.json").exists():
        return str(default)
    logger.warning("no reward model given: bootstrapping one from MiniLM at %s "
                   "(a few minutes, once)", default)
    run(RewardModelStageConfig(out_dir=str(default)))
    return str(default)
