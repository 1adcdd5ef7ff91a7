"""The config of one catalog summarization run (:func:`relsum.summarize.job.run_summarize`).

Its own module so that the job and the shard generation (:mod:`relsum.summarize.generation`) both
import it without importing each other, and so the CLI builds ``relsum summarize --help`` without the
job's dependencies.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from relsum.core.config import cfg
from relsum.core.paths import home
from relsum.data.config import ContractConfig
from relsum.policy.config import SAMPLING_TEMPERATURE
from relsum.scoring.config import STAGE_SCORER_HELP, ScorerConfig, stage_scorer_config


@dataclasses.dataclass
class SummarizeConfig:
    """One summarization run over a catalog (see the module docstring for the output layout)."""

    catalog: str = cfg("", help="catalog source (csv/jsonl/parquet path or duckdb:<db>:<table|query>)")
    model_dir: str = cfg("", help="local causal-LM folder of the policy (base model)")
    adapter_dir: str | None = cfg(None, help="optional LoRA adapter folder, merged into "
                                             "the base for inference")
    out_dir: str | None = cfg(None, help="output folder; default <relsum home>/summaries")
    incremental: bool = cfg(True, help="only generate products whose content key is not in the last output")
    shard_size: int = cfg(256, help="products per shard (the unit of commit and of restart)")
    batch_size: int = cfg(16, help="generation batch size (in-process and vLLM)")
    max_new_tokens: int = cfg(48, help="generated tokens per summary")
    max_input_tokens: int = cfg(384, help="prompt token cap; the description is cut to fit, "
                                          "over-long frames rejected")
    max_summary_words: int = cfg(64, help="cap on the stored summary, in whitespace words")
    allow_base_mismatch: bool = cfg(False, help="merge an adapter into a model_dir other than the base it "
                                    "was trained on (refused by default: it loads fine and serves nonsense)")
    prompt: str = cfg("auto", help="prompt variant (paper | one_line | one_line_started); auto = the one the "
                      "adapter was trained with (its relsum_prompt.json), else one_line for chat "
                      "models, paper otherwise")
    dtype: Literal["auto", "fp32", "bf16"] = cfg("auto", help="policy precision for the hf/ray "
                                                "backends: auto = bf16 on "
                                                "CPUs with native bf16 (and bf16 GPUs), fp32 elsewhere")
    backend: Literal["hf", "ray", "vllm"] = cfg("hf", help="hf (in-process, default) | ray "
                                                           "(Ray Data) | vllm (GPU)")
    threads: int = cfg(0, help="torch threads for the hf backend (0 = torch default)")
    ray_address: str = cfg("", help="Ray cluster address ('' = start a local Ray, 'auto' = "
                                    "the running cluster)")
    ray_num_actors: int = cfg(2, help="Ray actor pool size (each actor loads the policy once)")
    ray_batch_size: int = cfg(16, help="products per Ray batch")
    ray_num_cpus: int = cfg(0, help="CPUs for a local Ray (0 = ray_num_actors x ray_cpus_per_actor)")
    ray_cpus_per_actor: float = cfg(1.0, help="CPUs reserved per actor (also its torch threads)")
    ray_gpus_per_actor: float = cfg(0.0, help="GPUs reserved per actor")
    vllm_gpu_memory_utilization: float = cfg(0.9, help="vLLM share of GPU memory")
    vllm_tensor_parallel_size: int = cfg(1, help="vLLM tensor parallel degree (GPUs per model)")
    vllm_dtype: str = cfg("auto", help="vLLM dtype (auto, bfloat16, float16)")
    model_version: str = cfg("", help="version stamp; '' = hash of the model config, "
                                      "weight files and adapter")
    generated_at: str = cfg("", help="timestamp stored with each summary; '' = when the run's plan is made")
    show_progress: bool = cfg(True, help="tqdm progress bar with ETA over products")
    contract: ContractConfig = cfg(default_factory=ContractConfig, help="catalog contract settings")
    best_of: int = cfg(1, help="1 = greedy summaries only; N > 1: for products with logged queries, the "
                       "greedy summary and N samples compete and the best product-level reward on those "
                       "queries is kept (needs search_log and reward_model)")
    search_log: str = cfg("", help="search log (the pairs build's format) giving each product's queries "
                          "and human labels for best_of")
    reward_model: str = cfg("", help="local cross-encoder folder scoring the best_of candidates")
    best_of_temperature: float = cfg(SAMPLING_TEMPERATURE, help="sampling temperature of the best_of "
                                     "samples (default: the training temperature)")
    best_of_seed: int = cfg(0, help="seed of the best_of samples (shard n samples with seed + n, so a "
                            "rerun samples the same)")
    scorer: ScorerConfig = cfg(default_factory=stage_scorer_config, help=STAGE_SCORER_HELP)

    def __post_init__(self) -> None:
        if self.out_dir is None:
            self.out_dir = str(home() / "summaries")
        for name in ("shard_size", "batch_size", "max_new_tokens", "max_input_tokens", "ray_num_actors",
                     "ray_batch_size", "vllm_tensor_parallel_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_summary_words < 0 or self.threads < 0 or self.ray_num_cpus < 0:
            raise ValueError("max_summary_words, threads and ray_num_cpus must be >= 0")
        if not 0 < self.vllm_gpu_memory_utilization <= 1:
            raise ValueError("vllm_gpu_memory_utilization must be in (0, 1]")
        if self.best_of < 1 or self.best_of_temperature <= 0 or self.best_of_seed < 0:
            raise ValueError("best_of must be >= 1, best_of_temperature > 0 and best_of_seed >= 0")
        if self.best_of > 1 and not (self.search_log and self.reward_model):
            raise ValueError(f"best_of={self.best_of} needs search_log (--search-log: whose queries) and "
                             "reward_model (--reward-model: the cross-encoder that scores the candidates)")
