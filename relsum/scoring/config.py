"""The scoring package's configs: the scorer's (:class:`ScorerConfig`: how it tokenizes, batches, caches
and which inference path it runs) and the Ray labelling stage's (:class:`RayLabelConfig`).

Standard library and :mod:`relsum.core.config` only, so that stage configs can embed a scorer section and
``relsum <stage> --help`` builds them without loading numpy, pandas, torch or Ray. The code that reads
them is :mod:`relsum.scoring.scorer`, :mod:`relsum.scoring.fast` and :mod:`relsum.scoring.ray_label`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from pathlib import Path
from typing import Any

from relsum.core.config import cfg, check_seed

logger = logging.getLogger(__name__)

_SUPPORTED_DTYPES = ("float32",)
#: Environment variable giving the default ``path`` of every scorer a stage builds (e.g. ``auto``).
PATH_ENV = "RELSUM_SCORER_PATH"
#: The inference paths (run by :mod:`relsum.scoring.fast`); here, the config checks ``path`` without numpy.
PATHS = ("fp32", "bf16", "onnx-fp32", "onnx-int8", "onnx-int8-static", "torch-int8", "fp16-cuda")


def parse_layers(spec: str) -> list[int]:
    """``"0,-1"`` -> ``[0, -1]``; empty -> ``[]``. Raises ValueError on anything else."""
    try:
        return [int(part) for part in spec.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"int8_fp32_layers must be comma-separated integers, got {spec!r}") from None


def default_path() -> str:
    """``$RELSUM_SCORER_PATH`` or fp32: one switch routes every stage's scorer (labelling, reward,
    evaluation, promotion gate) through a path, ``auto`` included, without a config key per stage."""
    return os.environ.get(PATH_ENV, "").strip() or "fp32"


@dataclasses.dataclass
class ScorerConfig:
    """How the scorer tokenizes, batches and caches; ``max_length`` and ``dtype`` change scores."""

    max_length: int = cfg(256, help="max tokens of [CLS] query [SEP] doc [SEP]; the doc is truncated first")
    batch_size: int = cfg(32, help="nominal rows per batch; a batch never has more than 4x this many rows")
    # 2048 measured best on a 2-core AVX2 CPU (MiniLM-L6, mixed lengths): 1.2-1.3x predict(batch_size=32),
    # while 8192 ran at 0.85-1.03x (activations of big batches fall out of the CPU caches). GPUs want ~32k+.
    max_tokens_per_batch: int = cfg(
        2048, help="token budget per batch (rows x padded length), so short pairs go in bigger batches; "
        "about 2048 suits a CPU, raise it (e.g. 32768) on a GPU")
    cache: bool = cfg(True, help="keep an in-memory (query, doc) -> score cache across calls")
    show_progress: bool | None = cfg(
        None, help="tqdm bar over pairs; None = automatic (on when a call scores more than 1000 pairs)")
    device: str = cfg("cpu", help="torch device: cpu, cuda, cuda:N or mps")
    num_threads: int | None = cfg(None, help="torch intra-op threads while scoring; None = torch default")
    dtype: str = cfg("float32", help="compute dtype; only float32 is supported for now")
    init_seed: int = cfg(0, help="seed for a randomly initialised classifier head (untrained start)")
    path: str = cfg(help="inference path: fp32, bf16, onnx-fp32, onnx-int8, onnx-int8-static, torch-int8, "
                    "fp16-cuda or auto (the fastest gate-passing path here, measured once "
                    "and cached); anything "
                    f"but fp32 must pass the fidelity gate against fp32 first; default ${PATH_ENV} or fp32",
                    default_factory=default_path)
    int8_fp32_layers: str = cfg("0,-1", help="encoder layers kept in fp32 on the int8 paths, comma-separated "
                                "(negative = from the end; empty = quantize every "
                                "layer); the head stays fp32")
    store: bool = cfg(False, help="persist scores on disk per fingerprint and serve repeats from there")
    store_dir: str | None = cfg(None, help="score-store root; None = <RELSUM_HOME>/scores (also holds gate "
                                "results and ONNX exports)")
    int8_calib_dir: str | None = cfg(None, help="golden-layout folder whose pairs "
                                                "calibrate onnx-int8-static's "
                                     "activation scales; None = the bundled train sample "
                                     "(not the gate's set)")
    int8_calib_pairs: int = cfg(256, help="calibration pairs for onnx-int8-static (0 = all)")
    auto_paths: list = cfg([], help="paths that path=auto may choose from (fp32 always); [] = all of them")
    gate_golden: str | None = cfg(None, help="golden folder of the fidelity gate's calibration set; "
                                  "None = the bundled sample")
    gate_max_pairs: int | None = cfg(None, help="cap on calibration pairs (whole queries); None = all")

    def __post_init__(self) -> None:
        check_seed("init_seed", self.init_seed)
        if self.max_length < 8:
            raise ValueError(f"max_length must be >= 8, got {self.max_length}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_tokens_per_batch < self.max_length:
            raise ValueError(f"max_tokens_per_batch ({self.max_tokens_per_batch}) must be >= max_length "
                             f"({self.max_length}) so that one full-length pair fits in a batch")
        if self.dtype not in _SUPPORTED_DTYPES:
            raise ValueError(f"dtype must be one of {_SUPPORTED_DTYPES}, got {self.dtype!r}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1 or None, got {self.num_threads}")
        if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", self.device):
            raise ValueError(f"device must be cpu, mps, cuda or cuda:N, got {self.device!r}")
        if self.path not in (*PATHS, "auto"):
            raise ValueError(f"path must be one of {(*PATHS, 'auto')}, got {self.path!r}")
        bad = [p for p in self.auto_paths if p not in PATHS]
        if bad:
            raise ValueError(f"auto_paths: unknown paths {bad}; choose from {PATHS}")
        if self.int8_calib_pairs < 0:
            raise ValueError(f"int8_calib_pairs must be >= 0, got {self.int8_calib_pairs}")
        parse_layers(self.int8_fp32_layers)
        if self.gate_max_pairs is not None and self.gate_max_pairs < 10:
            raise ValueError(f"gate_max_pairs must be >= 10 or None, got {self.gate_max_pairs}")


def stage_scorer_config() -> ScorerConfig:
    """The default ``scorer`` section of a stage config: the persistent score store on, so reruns,
    retries and later stages reuse scores."""
    return ScorerConfig(store=True)


#: Help text of every stage config's ``scorer`` section.
STAGE_SCORER_HELP = ("Scorer settings (batching, threads, inference path, score store) of every scoring "
                     "call of this stage.")


def share_scorer_section(outer: ScorerConfig, nested: dict[str, Any], stage: str) -> None:
    """Make the nested stage configs in ``nested`` (name -> config with a ``scorer`` field) use ``outer``.

    Why: a stage that runs other stages (demo, ablate, the DAGs) builds ONE scorer from its own
    ``scorer`` section and hands it to every step, so a nested ``pairs.scorer.*`` would never be read.
    A nested section left at its default (or equal to ``outer``) is replaced by ``outer``, so saved
    and logged configs show the settings really used; one set to anything else is an error that names
    the key to set instead.
    """
    default = stage_scorer_config()
    for name, config in nested.items():
        own = config.scorer
        if own != outer and own != default:
            key = next(f.name for f in dataclasses.fields(own)
                       if getattr(own, f.name) != getattr(default, f.name))
            raise ValueError(f"{name}.scorer.{key} is set, but {stage} scores every step with one scorer "
                             f"built from its scorer section: set scorer.{key} instead")
        config.scorer = outer


@dataclasses.dataclass
class RayLabelConfig:
    """Stage ``relsum label-ray``: label Parquet pairs with one scorer per Ray actor."""

    input: str = cfg("", help="a Parquet file or a folder of *.parquet parts with query, "
                              "title, text[, label]")
    out_dir: str = cfg("relsum_home/labelled", help="output folder: one labelled part per input part")
    reward_model: str = cfg("", help="local cross-encoder folder (the one scorer)")
    scorer: ScorerConfig = cfg(default_factory=ScorerConfig, help="scorer config used by every actor")
    address: str | None = cfg(None, help="Ray cluster address (e.g. ray://head:10001 or "
                                         "auto); None = local Ray")
    local_num_cpus: int | None = cfg(None, help="CPUs of the local Ray runtime; None = all")
    num_actors: int = cfg(2, help="scorer actors (each loads the model once)")
    cpus_per_actor: float = cfg(1.0, help="CPUs reserved per actor; also its torch threads (rounded up)")
    batch_size: int = cfg(256, help="rows per map_batches call")

    def __post_init__(self):
        if self.num_actors < 1 or self.batch_size < 1 or self.cpus_per_actor <= 0:
            raise ValueError("num_actors and batch_size must be >= 1 and cpus_per_actor > 0")
        if (self.local_num_cpus is not None
                and self.num_actors * self.cpus_per_actor > self.local_num_cpus - 0.5):
            raise ValueError(f"{self.num_actors} actors x {self.cpus_per_actor} CPUs leave "
                             f"no CPU of the local "
                             f"Ray's {self.local_num_cpus} for reading Parquet (the run would stall); "
                             "lower num_actors or cpus_per_actor")


#: RewardModelConfig.bf16 / .text_view values.
BF16_SETTINGS = ("auto", "on", "off")
TEXT_VIEWS = ("lead", "full")


@dataclasses.dataclass
class RewardModelConfig:
    """Reward-model bootstrap (``distill-v4``). Defaults (judged + ~2,500 teacher-labelled pairs x 2 views,
    2 epochs, 96 tokens, bf16 where native, 20% of the train queries kept for a class-balanced calibration)
    were chosen on splits of the train queries (``benchmarks/select_reward_recipe.py``; the last choice by a
    3-fold CV; every candidate's figures are in docs/reward_model.md), never on the golden split."""

    base_model: str = cfg("", help="local model folder to start from; empty = the bundled MiniLM")
    teacher_model: str = cfg("", help="bi-encoder whose cosine is distilled; empty = the bundled MiniLM")
    distill: bool = cfg(True, help="add teacher-labelled unjudged pairs (needs a catalog); off = judged only")
    teacher_lead_words: int = cfg(40, help="the teacher reads title + the first N words of the text (its "
                                           "best view: longer text dilutes a mean-pooled embedding)")
    hard_negatives: int = cfg(40, help="per train query, the teacher's top-N catalog products to distil on")
    random_negatives: int = cfg(40, help="per train query, N random catalog products (easy negatives)")
    max_length: int = cfg(96, help="training token budget of [CLS] query [SEP] doc [SEP]: title + ~50 "
                                   "words; longer costs time roughly in proportion")
    eval_max_length: int = cfg(256, help="token budget of the held-out report (the scorer's default)")
    epochs: int = cfg(2, help="passes over the training examples")
    batch_size: int = cfg(32, help="training batch size")
    learning_rate: float = cfg(5e-5, help="AdamW peak learning rate (linear warmup and decay)")
    warmup_ratio: float = cfg(0.1, help="fraction of steps with linear warmup, in [0, 1)")
    seed: int = cfg(0, help="seed for subsampling, negatives, the new head and data order")
    max_train_pairs: int | None = cfg(None, help="subsample this many judged pairs; None = all")
    title_only_copies: bool = cfg(True, help="also train every pair with a title-only document")
    bf16: str = cfg("auto", help="bf16 autocast in training: auto (only on CPUs with native bf16), on, off")
    view_consistency: float = cfg(0.0, help="weight of a pairwise term on judged pairs: the title + text "
                                            "score must sit above the title-only one for relevant pairs and "
                                            "below it for irrelevant ones (text moves the score toward the "
                                            "label, what a summary reward needs); 0 = off")
    judged_finish_epochs: int = cfg(0, help="after the distillation epochs, this many more passes over the "
                                            "judged pairs alone (both views), so the scores end on the human "
                                            "labels; 0 = none")
    calibrate: bool = cfg(True, help="fit an affine map of the logit on the judged pairs for -|r - l|")
    calibration_holdout: float = cfg(0.2, help="share of the train queries kept out of the student's "
                                               "training to fit the calibration on (scores of unseen "
                                               "queries, as served); 0 = fit on the training pairs (v1)")
    calibration_balance: bool = cfg(True, help="weigh relevant and other held-out pairs half each in the "
                                               "calibration fit, so the map does not follow the held-out "
                                               "queries' base rate (27-68% relevant across train slices)")
    calibration_min_pairs: int = cfg(50, help="fewer held-out judged pairs than this and the calibration "
                                              "is fitted on the training pairs (with a warning)")
    view_targets: bool = cfg(True, help="each document view gets the teacher's estimate from that view "
                                        "(title-only: the title's cosine); off = both views share the "
                                        "title + lead target (v1)")
    judged_title_weight: float = cfg(0.5, help="title-only target of a judged pair: this weight on the human "
                                               "label, the rest on the teacher's title-only estimate")
    text_view: str = cfg("lead", help="title + text training document: lead (the teacher's title + first "
                                      "teacher_lead_words words) or full (the whole text, cut at max_length)")
    out_dir: str = cfg("", help="where the trained model is saved; empty = <relsum home>/reward_model")

    def __post_init__(self) -> None:
        if self.max_length < 16 or self.eval_max_length < 16:
            raise ValueError(f"max_length and eval_max_length must be >= 16, got {self.max_length}, "
                             f"{self.eval_max_length}")
        if self.view_consistency < 0:
            raise ValueError(f"view_consistency must be >= 0, got {self.view_consistency}")
        if self.judged_finish_epochs < 0:
            raise ValueError(f"judged_finish_epochs must be >= 0, got {self.judged_finish_epochs}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.max_train_pairs is not None and self.max_train_pairs < 1:
            raise ValueError(f"max_train_pairs must be >= 1 or None, got {self.max_train_pairs}")
        if min(self.hard_negatives, self.random_negatives, self.teacher_lead_words) < 0:
            raise ValueError("hard_negatives, random_negatives and teacher_lead_words must be >= 0")
        if not 0 <= self.calibration_holdout < 1 or not 0 <= self.judged_title_weight <= 1:
            raise ValueError(f"calibration_holdout must be in [0, 1) and judged_title_weight in [0, 1], got "
                             f"{self.calibration_holdout}, {self.judged_title_weight}")
        if self.calibration_min_pairs < 0:
            raise ValueError(f"calibration_min_pairs must be >= 0, got {self.calibration_min_pairs}")
        if self.text_view not in TEXT_VIEWS:
            raise ValueError(f"text_view must be one of {TEXT_VIEWS}, got {self.text_view!r}")
        if self.bf16 not in BF16_SETTINGS:
            raise ValueError(f"bf16 must be one of {BF16_SETTINGS}, got {self.bf16!r}")

    def resolved_base_model(self) -> Path:
        if self.base_model:
            return Path(self.base_model)
        from relsum.core.paths import minilm_dir

        return minilm_dir()

    def resolved_teacher(self) -> Path:
        if self.teacher_model:
            return Path(self.teacher_model)
        from relsum.core.paths import minilm_dir

        return minilm_dir()

    def resolved_out_dir(self) -> Path:
        if self.out_dir:
            return Path(self.out_dir)
        from relsum.core.paths import home

        return home() / "reward_model"
