"""Typed configs for the GRPO / DPO / RFT training stages (the policy's own: :mod:`relsum.policy.config`).

Paper defaults (Table 1): LoRA r=32, alpha=32; GRPO G=4, beta=0.0, epsilon=0.2; DPO beta=0.1, two
samples per prompt; temperature 0.9; learning rate 1e-5, cosine schedule, 1 epoch, batch 8.
TRL's ``GRPOConfig`` / ``DPOConfig`` and PEFT's ``LoraConfig`` are reused as they are: these
dataclasses hold their kwargs (typed fields for the paper's knobs plus a free ``extra`` dict merged
on top) and build them, validating unknown keys at load time rather than at train time. The optimizer
fields the three stages share are declared once, in :class:`OptimizerConfig`.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, ClassVar, Literal

from relsum.core.config import cfg, check_seed
from relsum.policy.config import SAMPLING_TEMPERATURE, PolicyConfig, TinyPolicyConfig

logger = logging.getLogger(__name__)

#: dpo.pairing values (see DPOStageConfig.pairing).
DPO_PAIRINGS = ("paper", "best_worst")


def _check_extra(extra: dict[str, Any], cls_name: str) -> None:
    if not extra:  # nothing to check: building a default config (e.g. for --help) must not import TRL
        return
    import trl

    cls = getattr(trl, cls_name)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(extra) - known)
    if unknown:
        raise ValueError(f"extra: unknown {cls_name} arguments {unknown}")


def _with_extra(kwargs: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` on top of ``kwargs``; a user's deprecated ``gradient_checkpointing`` still wins (transformers
    would otherwise let our ``activation_checkpointing`` override it silently)."""
    merged = {**kwargs, **extra}
    if "gradient_checkpointing" in extra and "activation_checkpointing" not in extra:
        merged["activation_checkpointing"] = merged.pop("gradient_checkpointing")
    return merged


@dataclasses.dataclass
class OptimizerConfig:
    """The TrainingArguments every stage passes to its TRL trainer, declared once (as TRL's
    ``trainer/base_config.py`` does for its trainers): a stage redeclares a field only to give it its own
    default or help, and names its TRL config class (``trl_config``) so ``extra`` is checked against it."""

    trl_config: ClassVar[str] = ""  # the stage's trl config class; "" = extra is not checked

    learning_rate: float = cfg(1e-5, help="AdamW learning rate (paper: 1e-5)")
    lr_scheduler_type: str = cfg("cosine", help="scheduler (paper: cosine)")
    num_train_epochs: float = cfg(1.0, help="epochs (paper: 1)")
    max_steps: int = cfg(-1, help="stop after this many optimizer steps (-1 = epochs decide)")
    per_device_train_batch_size: int = cfg(8, help="examples per device step")
    gradient_accumulation_steps: int = cfg(1, help="gradient accumulation")
    logging_steps: int = cfg(1, help="log every n steps")
    extra: dict = cfg({}, help="more TRL config kwargs, merged on top")

    def __post_init__(self) -> None:
        if self.trl_config:
            _check_extra(self.extra, self.trl_config)

    def trainer_kwargs(self, output_dir: str, *, seed: int, report_to: str, bf16: bool) -> dict[str, Any]:
        """TrainingArguments shared by the GRPO, DPO and RFT stages (CPU unless bf16 is asked for)."""
        return {
            "output_dir": output_dir, "learning_rate": self.learning_rate,
            "lr_scheduler_type": self.lr_scheduler_type, "num_train_epochs": self.num_train_epochs,
            "max_steps": self.max_steps, "per_device_train_batch_size": self.per_device_train_batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "logging_steps": self.logging_steps,
            "seed": seed, "report_to": report_to, "bf16": bf16, "use_cpu": not bf16,
            "remove_unused_columns": False, "save_strategy": "no", "disable_tqdm": False,
            # Recomputing activations saves GPU memory on a 7B model; on the CPU it only costs time. The
            # new name: transformers 5.x warns on `gradient_checkpointing` (removed in v6) and mirrors this
            # value into it.
            "activation_checkpointing": bf16,
        }


@dataclasses.dataclass
class GRPOStageConfig(OptimizerConfig):
    trl_config: ClassVar[str] = "GRPOConfig"

    num_generations: int = cfg(4, help="G, completions per prompt (paper: 4)")
    temperature: float = cfg(SAMPLING_TEMPERATURE, help="sampling temperature (paper: 0.9)")
    beta: float = cfg(0.0, help="KL coefficient (paper: 0.0, so no reference model is kept)")
    epsilon: float = cfg(0.2, help="clipping epsilon (paper: 0.2)")
    loss_type: str = cfg("grpo", help="TRL loss_type; 'grpo' = the paper's per-sequence length normalisation")
    per_device_train_batch_size: int = cfg(4, help="completions per device step; multiple of num_generations")
    gradient_accumulation_steps: int = cfg(2, help="4 x 2 = the paper's batch of 8 completions per update")
    extra: dict = cfg({}, help="more trl.GRPOConfig kwargs, merged on top (e.g. {bf16: "
                               "true, use_cpu: false})")
    use_vllm: bool = cfg(False, help="generate GRPO completions with vLLM (GPU runs only: "
                                     "needs policy.bf16=true "
                                     "and the vllm package)")
    vllm_mode: str = cfg("colocate", help="colocate: vLLM inside each training process, sharing its GPU; "
                         "server: a separate `trl vllm-serve` process at vllm_server_base_url")
    vllm_server_base_url: str = cfg("", help="server mode: e.g. http://localhost:8000 ('' = "
                                             "TRL's host/port default)")
    vllm_gpu_memory_utilization: float = cfg(0.3, help="colocate mode: GPU memory fraction vLLM may take")
    vllm_tensor_parallel_size: int = cfg(1, help="colocate mode: GPUs per vLLM instance")

    def __post_init__(self) -> None:
        if self.vllm_mode not in ("colocate", "server"):
            raise ValueError(f"vllm_mode must be colocate or server, got {self.vllm_mode!r}")
        if not 0 < self.vllm_gpu_memory_utilization <= 1 or self.vllm_tensor_parallel_size < 1:
            raise ValueError("vllm_gpu_memory_utilization must be in (0, 1] and "
                             "vllm_tensor_parallel_size >= 1")
        if self.num_generations < 2:
            raise ValueError("num_generations must be >= 2 (group-relative advantages need a group)")
        if self.per_device_train_batch_size % self.num_generations:
            raise ValueError(
                f"per_device_train_batch_size ({self.per_device_train_batch_size}) counts completions and "
                f"must be a multiple of num_generations ({self.num_generations})")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0")
        super().__post_init__()

    def to_grpo_config(self, output_dir: str, *, max_completion_length: int = 48, seed: int = 0,
                       report_to: str = "none", bf16: bool = False, top_entropy_quantile: float = 1.0) -> Any:
        """A ``trl.GRPOConfig`` for CPU by default; ``extra`` overrides anything."""
        from trl import GRPOConfig

        kwargs = self.trainer_kwargs(output_dir, seed=seed, report_to=report_to, bf16=bf16)
        kwargs.update({
            "num_generations": self.num_generations, "temperature": self.temperature, "beta": self.beta,
            "epsilon": self.epsilon, "loss_type": self.loss_type,
            "max_completion_length": max_completion_length,
        })
        if top_entropy_quantile < 1.0:
            kwargs["top_entropy_quantile"] = top_entropy_quantile
        if self.use_vllm:
            kwargs.update({"use_vllm": True, "vllm_mode": self.vllm_mode})
            if self.vllm_mode == "colocate":
                kwargs.update({"vllm_gpu_memory_utilization": self.vllm_gpu_memory_utilization,
                               "vllm_tensor_parallel_size": self.vllm_tensor_parallel_size})
            elif self.vllm_server_base_url:
                kwargs["vllm_server_base_url"] = self.vllm_server_base_url
        return GRPOConfig(**_with_extra(kwargs, self.extra))


@dataclasses.dataclass
class DPOStageConfig(OptimizerConfig):
    trl_config: ClassVar[str] = "DPOConfig"

    beta: float = cfg(0.1, help="DPO beta (paper: 0.1)")
    samples_per_prompt: int = cfg(2, help="summaries sampled per prompt from the reference policy (paper: 2)")
    temperature: float = cfg(SAMPLING_TEMPERATURE, help="sampling temperature for the pairs (paper: 0.9)")
    pairing: str = cfg("paper", help="paper: one pair per (query, product) row from samples_per_prompt "
                                     "samples, pair-level reward; best_worst: one pair per product, best vs "
                                     "worst of samples_per_product samples by the product-level reward (mean "
                                     "over its training queries), every product's queries used")
    samples_per_product: int = cfg(8, help="pairing=best_worst: summaries sampled per product (N)")
    max_products: int = cfg(0, help="pairing=best_worst: pair only a seeded draw of this many training "
                                    "products (sampling N of every product comes before the first step); "
                                    "0 = all")
    min_reward_margin: float = cfg(0.01, help="drop pairs whose rewards differ by less than this (near-ties)")
    generation_batch_size: int = cfg(16, help="prompts per generation batch when sampling pairs")
    per_device_train_batch_size: int = cfg(8, help="pairs per step (paper: 8)")
    extra: dict = cfg({}, help="more trl.DPOConfig kwargs, merged on top")

    def __post_init__(self) -> None:
        if self.samples_per_prompt < 2 or self.samples_per_product < 2:
            raise ValueError("samples_per_prompt and samples_per_product must be >= 2 to form a pair")
        if self.max_products < 0:
            raise ValueError(f"dpo.max_products must be >= 0, got {self.max_products}")
        if self.pairing not in DPO_PAIRINGS:
            raise ValueError(f"pairing must be one of {list(DPO_PAIRINGS)}, got {self.pairing!r}")
        if self.min_reward_margin < 0 or self.beta <= 0 or self.temperature <= 0:
            raise ValueError("min_reward_margin must be >= 0, beta and temperature > 0")
        super().__post_init__()

    def to_dpo_config(self, output_dir: str, *, max_length: int = 512, seed: int = 0,
                      report_to: str = "none", bf16: bool = False) -> Any:
        from trl import DPOConfig

        kwargs = self.trainer_kwargs(output_dir, seed=seed, report_to=report_to, bf16=bf16)
        kwargs.update({"beta": self.beta, "max_length": max_length})
        return DPOConfig(**_with_extra(kwargs, self.extra))


@dataclasses.dataclass
class RFTStageConfig(OptimizerConfig):
    """Rejection-sampling fine-tuning: per round, sample N summaries of every training product with the
    current policy (batched once, shared prefill), keep the best by the product-level reward and train the
    LoRA on the kept ones with TRL's ``SFTTrainer`` (``trl.SFTConfig`` built here, ``extra`` on top)."""

    trl_config: ClassVar[str] = "SFTConfig"

    samples_per_product: int = cfg(8, help="N, summaries sampled per product and round (best one kept)")
    rounds: int = cfg(1, help="sample-then-train rounds; round 2 samples from the round-1 adapter")
    products_per_round: int = cfg(0, help="sample only a seeded draw of this many training products per "
                                          "round, a new draw each round (under a budget, more rounds of "
                                          "fewer products reach a first update sooner); 0 = every product")
    temperature: float = cfg(SAMPLING_TEMPERATURE, help="sampling temperature (paper's GRPO/DPO value)")
    generation_batch_size: int = cfg(16, help="products per generation batch (each runs its prompt once "
                                              "for all N samples)")
    max_queries: int = cfg(0, help="product-level reward over at most this many training queries per "
                                   "product (seeded sample; 0 = all)")
    min_gain: float = cfg(0.0, help="keep a product's best sample only when its reward beats the mean of "
                                    "its N samples by at least this (0 = keep every product's best)")
    learning_rate: float = cfg(1e-4, help="AdamW learning rate of the LoRA (LoRA takes ~10x a full "
                                          "fine-tune's rate)")
    lr_scheduler_type: str = cfg("cosine", help="scheduler, per round")
    num_train_epochs: float = cfg(1.0, help="epochs over the kept summaries, per round")
    max_steps: int = cfg(-1, help="stop each round after this many optimizer steps (-1 = epochs decide)")
    per_device_train_batch_size: int = cfg(8, help="kept summaries per step")
    extra: dict = cfg({}, help="more trl.SFTConfig kwargs, merged on top")

    def __post_init__(self) -> None:
        if self.samples_per_product < 2:
            raise ValueError("rft.samples_per_product must be >= 2 (one sample has nothing to reject)")
        if not 1 <= self.rounds <= 10:
            raise ValueError(f"rft.rounds must be in [1, 10], got {self.rounds}")
        if self.temperature <= 0 or self.learning_rate <= 0:
            raise ValueError("rft.temperature and rft.learning_rate must be > 0")
        if self.generation_batch_size < 1 or min(self.max_queries, self.min_gain,
                                                 self.products_per_round) < 0:
            raise ValueError("rft.generation_batch_size must be >= 1, max_queries, min_gain and "
                             "products_per_round >= 0")
        if self.per_device_train_batch_size < 1 or self.gradient_accumulation_steps < 1:
            raise ValueError("rft.per_device_train_batch_size and gradient_accumulation_steps must be >= 1")
        if self.max_steps == 0 or self.max_steps < -1 or self.num_train_epochs <= 0:
            raise ValueError("rft.max_steps must be -1 or >= 1 and num_train_epochs > 0")
        super().__post_init__()

    def to_sft_config(self, output_dir: str, *, max_length: int = 512, seed: int = 0,
                      report_to: str = "none", bf16: bool = False) -> Any:
        """A ``trl.SFTConfig`` training on the completion only (prompt tokens are masked); no packing."""
        from trl import SFTConfig

        kwargs = self.trainer_kwargs(output_dir, seed=seed, report_to=report_to, bf16=bf16)
        kwargs.update({"max_length": max_length, "completion_only_loss": True, "packing": False})
        return SFTConfig(**_with_extra(kwargs, self.extra))


@dataclasses.dataclass
class OptionsConfig:
    product_reward: bool = cfg(False, help="one prompt per product, rewarded on the mean over "
                                           "its training queries")
    product_max_queries: int = cfg(0, help="product_reward: use at most this many queries per product "
                                           "(seeded sample; 0 = all)")
    group_filter: bool = cfg(False, help="zero the advantages of groups whose reward std < group_min_std")
    group_min_std: float = cfg(1e-3, help="group_filter: std threshold (TRL's sample std) below which "
                                          "a group is degenerate")
    top_entropy_quantile: float = cfg(1.0, help="TRL top_entropy_quantile: train on this top fraction of "
                                                "tokens by entropy (1.0 = all, paper)")
    variance_credit: float = cfg(0.0, help="alpha in [0, 1]: weight tokens by cross-rollout "
                                           "disagreement (0 = off)")
    grounding_weight: float = cfg(0.0, help="subtract weight * (fraction of summary content tokens not in "
                                            "title + text) from the reward")

    def __post_init__(self) -> None:
        if self.product_max_queries < 0:
            raise ValueError("options.product_max_queries must be >= 0")
        if self.group_min_std < 0:
            raise ValueError("options.group_min_std must be >= 0")
        if not 0.0 <= self.top_entropy_quantile <= 1.0:
            raise ValueError("options.top_entropy_quantile must be in [0, 1]")
        if not 0.0 <= self.variance_credit <= 1.0:
            raise ValueError("options.variance_credit must be in [0, 1]")
        if self.grounding_weight < 0:
            raise ValueError("options.grounding_weight must be >= 0")

    def reward_options_on(self) -> bool:
        """True when the reward function differs from the paper's pair-level RelevanceReward."""
        return self.product_reward or self.group_filter or self.grounding_weight > 0


@dataclasses.dataclass
class TrainConfig:
    algo: Literal["grpo", "dpo", "rft"] = cfg("grpo", help="grpo (paper's main), dpo, or rft "
                                                           "(rejection-sampling fine-tuning)")
    train_data: str = cfg("", help="training pairs Parquet (query_id, query, product_id, "
                                   "title, text, label, ...)")
    out_dir: str = cfg("runs/train", help="run folder; the LoRA adapter goes to <out_dir>/adapter")
    scorer_model_dir: str = cfg("", help="the frozen cross-encoder folder used as reward")
    max_train_rows: int = cfg(0, help="use at most this many training rows (0 = all)")
    seed: int = cfg(0, help="seed for sampling, shuffling and LoRA init")
    report_to: str = cfg("none", help="HF Trainer report_to (the lead's MLflow tracking logs separately)")
    policy: PolicyConfig = cfg(help="the policy model and LoRA", default_factory=PolicyConfig)
    tiny: TinyPolicyConfig = cfg(help="how the tiny "
                                      "default policy is built", default_factory=TinyPolicyConfig)
    grpo: GRPOStageConfig = cfg(help="GRPO stage", default_factory=GRPOStageConfig)
    dpo: DPOStageConfig = cfg(help="DPO stage", default_factory=DPOStageConfig)
    rft: RFTStageConfig = cfg(help="RFT stage (algo=rft)", default_factory=RFTStageConfig)
    options: OptionsConfig = cfg(help="GRPO options beyond the paper "
                                      "(all off = the paper)", default_factory=OptionsConfig)

    def __post_init__(self) -> None:
        if self.max_train_rows < 0:
            raise ValueError("max_train_rows must be >= 0")
        check_seed("seed", self.seed)
        if self.grpo.use_vllm and not self.policy.bf16:
            raise ValueError("grpo.use_vllm generates on a GPU: set policy.bf16=true (GPU "
                             "run) or use_vllm=false")
        default = OptionsConfig()
        changed = [f"options.{f.name}={getattr(default, f.name)}" for f in dataclasses.fields(default)
                   if getattr(self.options, f.name) != getattr(default, f.name)]
        if self.algo != "grpo" and changed:
            raise ValueError(f"options apply to algo=grpo only; with algo={self.algo} set "
                             f"{', '.join(changed)}")
        if self.tiny.max_summary_tokens > self.policy.max_summary_tokens:
            logger.debug("tiny warm-up summaries are longer than the policy's max_summary_tokens")
