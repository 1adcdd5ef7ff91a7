"""Stage: train the LoRA summarizer (GRPO or DPO) against the frozen scorer, tracked in MLflow.

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

import numpy as np
import pandas as pd

from relsum.config import cfg, flat_params, to_dict
from relsum.paths import SAMPLE_DIR, home
from relsum.tracking import TrackingConfig
from relsum.training.config import TrainConfig

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainStageConfig:
    train: TrainConfig = cfg(default_factory=TrainConfig, help="Policy, LoRA, GRPO and DPO settings.")
    tracking: TrackingConfig = cfg(default_factory=TrackingConfig, help="MLflow tracking.")
    catalog: str = cfg(str(SAMPLE_DIR / "products.jsonl"), help="Catalog the tiny default "
                                                                "policy is built from.")
    tiny_policy_dir: str = cfg("", help="Where the tiny default policy lives (default: "
                                        "<RELSUM_HOME>/tiny_policy).")
    holdout_fraction: float = cfg(0.2, help="Fraction of products held out for the reward comparison.")
    heldout_samples: int = cfg(8, help="Summaries sampled per held-out product at the training temperature "
                                       "to estimate each policy's expected reward, the quantity GRPO "
                                       "maximises (0 = greedy comparison only).")
    n_sample_summaries: int = cfg(20, help="Held-out summaries logged as a sample artifact.")
    n_boot: int = cfg(1000, help="Bootstrap resamples for the held-out reward CI.")
    max_heldout_products: int = cfg(0, help="Compare the policies on at most this many held-out products "
                                            "(seeded subset; 0 = all): generation dominates the "
                                            "comparison's time on a CPU.")
    balance_labels: bool = cfg(False, help="Per product, keep as many training pairs of each label value as "
                                           "of its rarest one (seeded): with mostly low labels, -|r - l| "
                                           "otherwise rewards lowering every score.")

    def __post_init__(self):
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ValueError("holdout_fraction must be in [0, 1)")
        if self.heldout_samples < 0 or self.max_heldout_products < 0:
            raise ValueError("heldout_samples and max_heldout_products must be >= 0")


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
    if config.train.policy.model_dir:
        return config.train.policy.model_dir
    out = Path(config.tiny_policy_dir) if config.tiny_policy_dir else home() / "tiny_policy"
    if not (out / "relsum_policy.json").exists():
        from relsum.data.contracts import ContractConfig, validate_catalog
        from relsum.data.io import read_table
        from relsum.training.tiny_policy import build_tiny_policy

        catalog = validate_catalog(read_table(config.catalog), ContractConfig()).valid
        logger.info("building the tiny default policy from %d products at %s", len(catalog), out)
        build_tiny_policy(catalog, out, config.train.tiny)
    return str(out)


def _compare_heldout(config: TrainStageConfig, heldout: pd.DataFrame, adapter_dir: str,
                     scorer) -> tuple[dict, pd.DataFrame]:
    """Reference policy against the trained adapter on held-out pairs: greedy and sampled rewards."""
    from relsum.policy_eval import compare_policies, sample_products, summarize_products
    from relsum.training.policy import load_policy

    tc = config.train
    temperature = tc.grpo.temperature if tc.algo == "grpo" else tc.dpo.temperature
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
    from relsum.metric_names import heldout_key, label_shift_metric

    out = {}
    for sampled in (False, True):
        for row in comparison.get(heldout_key("label_shifts", sampled), []):
            fields = {"shift": row["shift"], "shift_ci_low": row["shift_ci95"][0],
                      "shift_ci_high": row["shift_ci95"][1],
                      "score_reference": row["score_reference"], "score_trained": row["score_trained"]}
            out.update({label_shift_metric(row["label"], f, sampled): v for f, v in fields.items()})
    return out


def run(config: TrainStageConfig, scorer=None) -> dict:
    from relsum import tracking
    from relsum.data.io import read_table, write_parquet_atomic
    from relsum.scoring.scorer import Scorer, ScorerConfig
    from relsum.training import distributed
    from relsum.training.policy import prompt_cap

    tc = config.train
    if not tc.train_data:
        raise ValueError("train.train_data (the pairs Parquet from `relsum pairs`) is required")
    distributed.init(cpu=not tc.policy.bf16)  # under accelerate launch / torchrun: join the group first
    main = distributed.is_main_process()  # only rank 0 writes files, the MLflow run and the model version
    if scorer is None:
        if not tc.scorer_model_dir:
            raise ValueError("train.scorer_model_dir (the frozen cross-encoder folder) is required")
        scorer = Scorer(tc.scorer_model_dir, ScorerConfig(store=True))
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

            result = train_grpo(tc, train_df, scorer)
        else:
            from relsum.training.dpo import train_dpo

            result = train_dpo(tc, train_df, scorer)
        for in_memory in ("model", "tokenizer"):
            result.pop(in_memory, None)
        comparison, samples = _compare_heldout(config, heldout, result["adapter_dir"],
                                               scorer) if len(heldout) and main else ({}, None)
        if samples is not None:
            write_parquet_atomic(samples, out / "heldout_summaries.parquet")
        result.update({"heldout": comparison, "data": data_stats, "policy_dir": tc.policy.model_dir})
        if active is not None:
            from relsum.metric_names import heldout_key, heldout_metric

            tracking.log_metrics({heldout_metric(k): v for k, v in comparison.items() if np.isscalar(v)})
            if comparison:
                tracking.log_metrics({heldout_metric(heldout_key("reward_diff", s), side): ci[i]
                                      for s in (False, True)
                                      if (ci := comparison.get(heldout_key("reward_diff", s, ci=True)))
                                      for i, side in enumerate(("low", "high"))})
                tracking.log_metrics(label_shift_metrics(comparison))
                import mlflow

                mlflow.log_table(samples.head(config.n_sample_summaries), "sample_summaries.json")
            tracking.log_artifacts(result["adapter_dir"], "adapter")
            version = tracking.register_adapter(config.tracking, active.info.run_id, "adapter",
                                                tags={"algo": tc.algo, "policy_dir": tc.policy.model_dir})
            result.update({"mlflow_run_id": active.info.run_id, "model_version": version})
    if main:
        (out / "train_result.json").write_text(json.dumps(
            {k: v for k, v in result.items() if k != "log_history"}, indent=2, default=str))
    return result
