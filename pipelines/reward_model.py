"""Stage: bootstrap a cross-encoder reward model from the bundled MiniLM weights, cached by fingerprint.

For users without a ranker of their own: distils the MiniLM bi-encoder into a cross-encoder on the
train queries' search-log and catalog pairs and adds the graded judgments of a golden-layout folder
(:mod:`relsum.scoring.reward_model`), then reports held-out NDCG@5 and the reward on the eval folder.

The saved model carries ``reward_model_key.json``: a digest of the recipe, the config and every input
file (judgments, queries, grade map, catalog, search log, base and teacher weights). ``ensure_reward_model``
reuses a model only when that key matches, so a changed config or data retrains and an unchanged one
costs nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import pandas as pd

from relsum.core.paths import home
from relsum.pipelines.configs import RewardModelStageConfig

logger = logging.getLogger(__name__)

KEY_FILE = "reward_model_key.json"
#: Stage-config fields that do not change the trained model (where it goes; what it is reported on).
_NOT_IN_KEY = ("out_dir",)


def judged_pairs(folder: str):
    """(GoldenSet, pairs): query_id, query, product_id, title, text, label for every valid judgment."""
    from relsum.data.golden import load_golden

    golden = load_golden(folder)
    for table, rejects in golden.rejects.items():
        if len(rejects):
            logger.warning("%s: %d %s rows rejected (see validate)", folder, len(rejects), table)
    pairs = golden.judgments.merge(golden.queries[["query_id", "query"]], on="query_id")
    pairs = pairs.merge(golden.catalog[["product_id", "title", "text"]], on="product_id")
    return golden, pairs


def train_log_pairs(source: str, eval_queries: pd.DataFrame) -> pd.DataFrame | None:
    """(query_id, query, product_id) of the search log, without any eval query (by id or text)."""
    if not source:
        return None
    from relsum.data.io import read_table

    log = read_table(source)
    missing = {"query_id", "query", "product_id"} - set(log.columns)
    if missing:
        from relsum.core.errors import InputError

        raise InputError(f"search log {source}: missing columns {sorted(missing)}")
    log = log[["query_id", "query", "product_id"]].dropna().astype(str)
    texts = set(eval_queries["query"].str.strip().str.lower())
    held_out = (log["query_id"].isin(set(eval_queries["query_id"]))
                | log["query"].str.strip().str.lower().isin(texts))
    if held_out.any():
        logger.warning("search log %s: %d rows of %d eval queries left out of distillation (eval queries "
                       "never reach training)", source, int(held_out.sum()),
                       log.loc[held_out, "query_id"].nunique())
    return log[~held_out].reset_index(drop=True)


def _digest_files(h, paths: list[Path]) -> None:
    from relsum.scoring.model_files import file_digest

    for path in paths:
        if path.is_file():
            file_digest(path, h)
        else:
            h.update(f"{path}:absent".encode())


def cache_key(config: RewardModelStageConfig) -> str:
    """sha256 over the recipe version, the config (less ``out_dir``) and the bytes of every input."""
    from relsum.data.golden import find_catalog
    from relsum.scoring.config import RewardModelConfig
    from relsum.scoring.model_files import find_safetensors
    from relsum.scoring.reward_model import RECIPE_VERSION

    rm = RewardModelConfig(base_model=config.base_model, teacher_model=config.teacher_model)
    h = hashlib.sha256(RECIPE_VERSION.encode())
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in _NOT_IN_KEY}
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    files = []
    for folder in (Path(config.train_dir), Path(config.eval_dir)):
        files += [folder / "judgments.csv", folder / "queries.csv", folder / "relsum.yaml",
                  find_catalog(folder)]
    if config.search_log:
        files.append(Path(config.search_log))
    files += find_safetensors(rm.resolved_base_model()) + find_safetensors(rm.resolved_teacher())
    _digest_files(h, files)
    return h.hexdigest()


def stored_key(out_dir: Path) -> str | None:
    try:
        return json.loads((out_dir / KEY_FILE).read_text())["key"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run(config: RewardModelStageConfig) -> dict:
    from relsum.data.io import write_json_atomic
    from relsum.scoring.config import RewardModelConfig
    from relsum.scoring.reward_model import train_reward_model

    out_dir = config.resolved_out_dir()
    key = cache_key(config)
    rm_config = RewardModelConfig(
        base_model=config.base_model, teacher_model=config.teacher_model, max_length=config.max_length,
        epochs=config.epochs,
        batch_size=config.batch_size, learning_rate=config.learning_rate, distill=config.distill,
        hard_negatives=config.hard_negatives, random_negatives=config.random_negatives, bf16=config.bf16,
        calibrate=config.calibrate, calibration_balance=config.calibration_balance,
        max_train_pairs=config.max_train_pairs, seed=config.seed,
        out_dir=str(out_dir))
    golden, train = judged_pairs(config.train_dir)
    eval_golden, eval_ = judged_pairs(config.eval_dir)
    logged = train_log_pairs(config.search_log, eval_golden.queries)
    logger.info("training reward model on %d judged pairs of %d train queries, reporting on %d held-out "
                "pairs", len(train), train["query_id"].nunique(), len(eval_))
    catalog = golden.catalog[["product_id", "title", "text"]]
    metrics = train_reward_model(train, eval_, rm_config, catalog=catalog, logged=logged)
    write_json_atomic({"key": key, "recipe": metrics["recipe"]}, out_dir / KEY_FILE)  # last: marks complete
    metrics["out_dir"] = str(out_dir)
    metrics["cache_key"] = key
    return metrics


def ensure_reward_model(path: str = "", config: RewardModelStageConfig | None = None) -> str:
    """``path`` if given, else the bootstrap model under the run home: reused when its key matches the
    config and data, trained (once) otherwise."""
    if path:
        return path
    config = config or RewardModelStageConfig(out_dir=str(home() / "reward_model"))
    out_dir = config.resolved_out_dir()
    key = cache_key(config)
    if stored_key(out_dir) == key:
        logger.info("reward model: reusing %s (same config and data)", out_dir)
        return str(out_dir)
    why = "none yet" if not out_dir.exists() else "its config or data changed"
    logger.warning("reward model: training one at %s (%s): MiniLM distilled into a cross-encoder and fitted "
                   "to the train judgments, a few minutes, once", out_dir, why)
    run(config)
    return str(out_dir)
