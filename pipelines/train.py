"""Stage: train the LoRA summarizer (GRPO, DPO or RFT) against the frozen scorer, tracked in MLflow.

Pairs are split by product into train and held-out (a product's summary serves all of its queries,
so a held-out product must be unseen). After training, the reference policy and the adapter both
summarize the held-out products and the mean reward -|r(q,[t;s]) - l| of each is logged with a
paired bootstrap CI. MLflow gets params, TRL's per-step metrics (reward, KL, completion length,
entropy), the adapter, sample summaries, the training-set statistics and one model version.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from relsum.core.config import flat_params, to_dict
from relsum.core.memory import release_memory
from relsum.core.paths import home
from relsum.pipelines.configs import TrainStageConfig

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainPaths:
    """The files one training run leaves under ``trainer.out_dir`` (``None``: not written by this run, e.g.
    on a non-main rank, without held-out products, or no DPO pairs for GRPO)."""

    out_dir: str
    result: str | None
    heldout_pairs: str | None
    heldout_summaries: str | None
    dpo_pairs: str | None
    #: algo=rft: the best-of-N summaries each round trained on (``relsum.training.rft.SAMPLE_COLUMNS``).
    rft_samples: str | None = None

    @classmethod
    def under(cls, out: Path, main: bool, heldout_summaries: bool, dpo_pairs: bool,
              rft_samples: bool = False) -> TrainPaths:
        def file(name: str, written: bool) -> str | None:
            return str(out / name) if written else None

        return cls(out_dir=str(out), result=file("train_result.json", main),
                   heldout_pairs=file("heldout_pairs.parquet", main),
                   heldout_summaries=file("heldout_summaries.parquet", heldout_summaries),
                   dpo_pairs=file("dpo_pairs.parquet", dpo_pairs),
                   rft_samples=file("rft_samples.parquet", rft_samples))


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What :func:`run` returns; ``train_result.json`` holds :meth:`to_dict`.

    Only values, never the live model: the adapter is on disk at ``adapter_dir`` and applies to the base
    policy at ``policy_dir`` (as configured, e.g. the ``smollm2`` keyword, which
    :func:`relsum.policy.load.resolve_model_dir` turns into a folder).
    """

    algo: str
    adapter_dir: str
    policy_dir: str
    steps: int
    #: The held-out figures as logged to MLflow (:func:`heldout_metrics`); empty without a comparison.
    metrics: dict[str, float]
    #: :func:`relsum.training.policy_eval.compare_policies`' JSON (keys in :mod:`relsum.metrics.names`).
    heldout: dict[str, Any]
    #: Training-set statistics (pairs, train/held-out split, the pairs filter's statistics).
    data_stats: dict[str, Any]
    #: The algorithm's own figures: timings, rows, prompt variant, dtype, reward or preference-pair stats.
    trainer_stats: dict[str, Any]
    paths: TrainPaths
    mlflow_run_id: str | None = None
    model_version: str | None = None
    #: TRL's per-step log records; left out of :meth:`to_dict` (long, and already in MLflow).
    log_history: list[dict[str, Any]] = dataclasses.field(default_factory=list, repr=False)

    def to_dict(self, log_history: bool = False) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if not log_history:
            out.pop("log_history")
        return out


def split_by_product(pairs: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Deterministic product-level split: the same product always lands on the same side for a seed."""
    def bucket(pid: str) -> float:
        digest = hashlib.sha256(f"{seed}:{pid}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    held = pairs["product_id"].map(bucket) < fraction
    return pairs[~held].reset_index(drop=True), pairs[held].reset_index(drop=True)


def balance_labels(pairs: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Per product with >= 2 label values, a seeded sample of each value down to the rarest value's count.

    Why: one summary serves all of a product's queries and -|r - l| pulls r towards each pair's label; when
    most of a product's pairs have a low label, the summary that lowers the score for every query earns the
    most reward (reward hacking under label imbalance). Balancing makes raising r on relevant queries and
    lowering it on irrelevant ones equally worth. Products with a single label value are kept whole.
    """
    if pairs.empty:
        return pairs
    rng = np.random.default_rng(seed)
    keep = []
    for _, group in pairs.groupby("product_id", sort=True):
        counts = group["label"].value_counts()
        if len(counts) < 2:
            keep.extend(group.index)
            continue
        for _, rows in group.groupby("label", sort=True):
            keep.extend(rng.choice(rows.index.to_numpy(), size=int(counts.min()), replace=False))
    return pairs.loc[sorted(keep)].reset_index(drop=True)


def heldout_subset(heldout: pd.DataFrame, max_products: int, seed: int) -> pd.DataFrame:
    """Pairs of at most ``max_products`` held-out products (a seeded sample; 0 = all)."""
    ids = heldout["product_id"].drop_duplicates()
    if not max_products or len(ids) <= max_products:
        return heldout
    chosen = set(ids.sample(n=max_products, random_state=seed))
    return heldout[heldout["product_id"].isin(chosen)].reset_index(drop=True)


def ensure_policy(config: TrainStageConfig) -> str:
    """The policy folder: the configured one, or the tiny default (built once from the catalog)."""
    if config.trainer.policy.model_dir:
        return config.trainer.policy.model_dir
    out = Path(config.tiny_policy_dir) if config.tiny_policy_dir else home() / "tiny_policy"
    if not (out / "relsum_policy.json").exists():
        from relsum.data.config import ContractConfig
        from relsum.data.contracts import validate_catalog
        from relsum.data.io import read_table
        from relsum.policy.tiny import build_tiny_policy

        catalog = validate_catalog(read_table(config.catalog), ContractConfig()).valid
        logger.info("building the tiny default policy from %d products at %s", len(catalog), out)
        build_tiny_policy(catalog, out, config.trainer.tiny)
    return str(out)


def _compare_heldout(config: TrainStageConfig, heldout: pd.DataFrame, adapter_dir: str,
                     scorer) -> tuple[dict, pd.DataFrame]:
    """Reference policy against the trained adapter on held-out pairs: greedy and sampled rewards."""
    from relsum.policy.load import load_policy
    from relsum.training.policy_eval import compare_policies, sample_products, summarize_products

    tc = config.trainer
    temperature = {"grpo": tc.grpo.temperature, "dpo": tc.dpo.temperature, "rft": tc.rft.temperature}[tc.algo]
    products = heldout.drop_duplicates("product_id")[["product_id", "title", "text"]]
    greedy, sampled = {}, {}
    for name, adapter in (("reference", None), ("trained", adapter_dir)):
        logger.info("held-out comparison: %s policy on %d products (greedy%s)", name, len(products),
                    f" + {config.heldout_samples} samples" if config.heldout_samples else "")
        model, tokenizer = load_policy(tc.policy.model_dir, adapter, merge=adapter is not None)
        greedy[name] = summarize_products(model, tokenizer, products, tc.policy, show_progress=True)
        if config.heldout_samples:
            sampled[name] = sample_products(model, tokenizer, products, tc.policy, config.heldout_samples,
                                            temperature, seed=tc.seed, show_progress=True)
        del model, tokenizer  # one policy in memory at a time: free this one before the next loads
        release_memory()
    comparison = compare_policies(heldout, greedy["reference"], greedy["trained"], scorer,
                                  n_boot=config.n_boot,
                                  seed=tc.seed, reference_samples=sampled.get("reference"),
                                  trained_samples=sampled.get("trained"))
    samples = products.assign(summary_reference=products["product_id"].map(greedy["reference"]),
                              summary_trained=products["product_id"].map(greedy["trained"]))
    return comparison, samples


def label_shift_metrics(comparison: dict) -> dict[str, float]:
    """Flat MLflow metrics of the per-label score shifts:
    ``heldout_[sampled_]label_<l>_shift[_ci_low|_ci_high]``."""
    from relsum.metrics.names import heldout_key, label_shift_metric

    out = {}
    for sampled in (False, True):
        for row in comparison.get(heldout_key("label_shifts", sampled), []):
            fields = {"shift": row["shift"], "shift_ci_low": row["shift_ci95"][0],
                      "shift_ci_high": row["shift_ci95"][1],
                      "score_reference": row["score_reference"], "score_trained": row["score_trained"]}
            out.update({label_shift_metric(row["label"], f, sampled): v for f, v in fields.items()})
    return out


def heldout_metrics(comparison: dict) -> dict[str, float]:
    """Every flat MLflow metric of a held-out comparison: its scalars (``heldout_<key>``), the reward
    difference's CI ends and the per-label shifts (:func:`label_shift_metrics`)."""
    from relsum.metrics.names import heldout_key, heldout_metric

    if not comparison:
        return {}
    out = {heldout_metric(k): float(v) for k, v in comparison.items()
           if isinstance(v, int | float | np.number)}
    out.update({heldout_metric(heldout_key(name, s), side): float(ci[i])
                for name in ("reward_diff", "groundedness_diff") for s in (False, True)
                if (ci := comparison.get(heldout_key(name, s, ci=True)))
                for i, side in enumerate(("low", "high"))})
    out.update(label_shift_metrics(comparison))
    return out


#: Keys of the trainers' result dicts that are not figures: named TrainResult fields or in-memory objects.
TRAINER_KEYS = ("algo", "adapter_dir", "policy_dir", "steps", "log_history", "model", "tokenizer", "pairs",
                "samples")


def run(config: TrainStageConfig, scorer=None) -> TrainResult:
    """Split, (balance,) train, compare on held-out products, log and register; the result is also written
    to ``<out_dir>/train_result.json`` (main process only)."""
    from relsum.data.io import read_table, write_json_atomic, write_parquet_atomic
    from relsum.lifecycle import tracking
    from relsum.policy.load import prompt_cap
    from relsum.scoring.factory import make_scorer
    from relsum.training import distributed

    tc = config.trainer
    if not tc.train_data:
        raise ValueError("trainer.train_data (the pairs Parquet from `relsum pairs`) is required")
    distributed.init(cpu=not tc.policy.bf16)  # under accelerate launch / torchrun: join the group first
    main = distributed.is_main_process()  # only rank 0 writes files, the MLflow run and the model version
    if scorer is None:
        if not tc.scorer_model_dir:
            raise ValueError("trainer.scorer_model_dir (the frozen cross-encoder folder) is required")
        scorer = make_scorer(tc.scorer_model_dir, config.scorer)
    with distributed.main_process_first():
        tc.policy.model_dir = ensure_policy(config)
    tc.policy.max_prompt_tokens = prompt_cap(tc.policy.model_dir, tc.policy.max_prompt_tokens)
    out = Path(tc.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pairs = read_table(tc.train_data)
    if pairs.empty:
        raise ValueError(f"{tc.train_data} holds no training pairs: lower the gap filter's threshold "
                         "(pairs.filter.threshold) or use pairs.filter.mode=top_fraction")
    train_df, heldout = split_by_product(pairs, config.holdout_fraction, tc.seed)
    heldout = heldout_subset(heldout, config.max_heldout_products, tc.seed)
    if config.balance_labels:
        before = len(train_df)
        train_df = balance_labels(train_df, tc.seed)
        logger.info("balance_labels: %d of %d training pairs kept", len(train_df), before)
    if main:
        write_parquet_atomic(heldout, out / "heldout_pairs.parquet")
    stats_path = Path(tc.train_data).with_name("filter_stats.json")
    data_stats = {"pairs": int(len(pairs)), "train_pairs": int(len(train_df)),
                  "heldout_pairs": int(len(heldout)),
                  "train_products": int(train_df["product_id"].nunique())}
    if stats_path.exists():
        data_stats["filter"] = json.loads(stats_path.read_text())
    if config.tracking.enabled:
        tc.report_to = "mlflow"
    run_name = f"{tc.algo}-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}"
    track = dataclasses.replace(config.tracking, enabled=config.tracking.enabled and main)
    with tracking.tracked_run(track, run_name, tags={"relsum.algo": tc.algo}) as active:
        if active is not None:
            # Prefixed: TRL's MLflow callback logs the TrainingArguments under their bare names.
            params = {**flat_params(tc), "data.train_pairs": len(train_df),
                      "data.heldout_pairs": len(heldout),
                      "scorer.fingerprint": scorer.fingerprint or ""}
            tracking.log_params({f"relsum.{k}": v for k, v in params.items()})
            tracking.log_json(to_dict(config), "config.json")
            tracking.log_json(data_stats, "training_set_stats.json")
        if tc.algo == "grpo":
            from relsum.training.grpo import train_grpo

            trained = train_grpo(tc, train_df, scorer)
        elif tc.algo == "rft":
            from relsum.training.rft import train_rft

            trained = train_rft(tc, train_df, scorer)
            if active is not None:
                for stats in trained["round_stats"]:
                    tracking.log_metrics({f"rft_{k}": float(v) for k, v in stats.items() if k != "round"},
                                         step=int(stats["round"]))
        else:
            from relsum.training.dpo import train_dpo

            trained = train_dpo(tc, train_df, scorer)
        for in_memory in ("model", "tokenizer"):  # free the live model before the comparison loads two more
            trained.pop(in_memory, None)
        release_memory()  # the update's freed activations back to the OS, not under the comparison's peak
        dpo_pairs = trained.pop("pairs", None)
        rft_samples = trained.pop("samples", None)
        comparison, samples = _compare_heldout(config, heldout, trained["adapter_dir"],
                                               scorer) if len(heldout) and main else ({}, None)
        paths = TrainPaths.under(out, main, heldout_summaries=samples is not None,
                                 dpo_pairs=main and dpo_pairs is not None,
                                 rft_samples=main and rft_samples is not None)
        if samples is not None:
            write_parquet_atomic(samples, Path(paths.heldout_summaries))
        if paths.dpo_pairs:
            write_parquet_atomic(dpo_pairs, Path(paths.dpo_pairs))
        if paths.rft_samples:
            write_parquet_atomic(rft_samples, Path(paths.rft_samples))
        metrics = heldout_metrics(comparison)
        run_id = version = None
        if active is not None:
            tracking.log_metrics(metrics)
            if comparison:
                import mlflow

                mlflow.log_table(samples.head(config.n_sample_summaries), "sample_summaries.json")
            tracking.log_artifacts(trained["adapter_dir"], "adapter")
            run_id = active.info.run_id
            version = tracking.register_adapter(config.tracking, run_id, "adapter",
                                                tags={"algo": tc.algo, "policy_dir": tc.policy.model_dir})
    result = TrainResult(algo=trained["algo"], adapter_dir=str(trained["adapter_dir"]),
                         policy_dir=tc.policy.model_dir, steps=int(trained["steps"]), metrics=metrics,
                         heldout=comparison, data_stats=data_stats,
                         trainer_stats={k: v for k, v in trained.items() if k not in TRAINER_KEYS},
                         paths=paths, mlflow_run_id=run_id, model_version=version,
                         log_history=list(trained.get("log_history", [])))
    if main:
        write_json_atomic(result.to_dict(), Path(paths.result))
    return result
