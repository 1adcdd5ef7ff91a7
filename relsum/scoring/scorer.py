"""The ONE relevance scorer r(q, doc) in [0, 1]: proxy labels, the RL reward and evaluation all use it.

Why a hand-rolled inference loop instead of ``sentence_transformers.CrossEncoder.predict``: scoring is
the hot path of pair building, reward computation and evaluation, and those workloads repeat pairs a
lot (the same (query, title) pair for several candidates, repeated evaluations). The scorer therefore
dedupes pairs within a call and against an in-memory cache, tokenizes once, sorts by *token* length
and packs batches by a token budget (:mod:`relsum.scoring.batching`: short pairs go in big batches,
long ones in small batches), so almost no compute is spent on padding. Scores are identical (within
float noise) to scoring every pair alone; the tests check that.

At catalog scale two more things cut work: a persistent score store (``store=True``, see
:mod:`relsum.scoring.store`) so no pair is ever scored twice for the same fingerprint, and cheaper
inference paths (``path``, see :mod:`relsum.scoring.fast`), each admitted only after a fidelity gate.
Build scorers with :func:`relsum.scoring.factory.make_scorer`: it runs that gate (and ``path: auto``)
and hands the scorer its path; ``Scorer(...)`` alone scores only on fp32.

Models are loaded only from local folders, offline, from safetensors, never with remote code.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from relsum.scoring import batching, fast
from relsum.scoring.config import ScorerConfig
from relsum.scoring.documents import JOIN_FORMAT_VERSION, join_title_text
from relsum.scoring.model_files import file_digest, find_safetensors
from relsum.scoring.protocol import GateOutcome

logger = logging.getLogger(__name__)

__all__ = ["JOIN_FORMAT_VERSION", "CacheInfo", "Scorer", "join_title_text"]

_AUTO_PROGRESS_MIN_PAIRS = 1000
_UNSELECTED = ("scorer path {path!r} is not selected yet: build the scorer with "
               "relsum.scoring.factory.make_scorer, which runs the fidelity gate (and path auto)")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


class CacheInfo(NamedTuple):
    """``hits``/``misses`` count distinct pairs per call served from / added to the cache."""

    hits: int
    misses: int
    size: int


class Scorer:
    """A frozen cross-encoder r(q, doc) in [0, 1] loaded from a local folder (see module docstring).

    Single-logit models score ``sigmoid(logit)``; two-label models score ``softmax(logits)[:, 1]``.
    A folder without a classifier head (e.g. a sentence-transformers bi-encoder such as the bundled
    MiniLM) gets a seeded random head: that is the untrained start of the reward-model bootstrap.
    """

    def __init__(self, model_dir: str | Path, config: ScorerConfig | None = None) -> None:
        self.config = config or ScorerConfig()
        self._weight_files = find_safetensors(model_dir)
        self.model_dir = Path(model_dir).resolve()
        import torch
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        kw = {"local_files_only": True, "trust_remote_code": False}
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), **kw)
        if not self.tokenizer.is_fast:
            raise ValueError(f"{self.model_dir}: a fast (Rust) tokenizer is required")
        hf_config = AutoConfig.from_pretrained(str(self.model_dir), **kw)
        archs = hf_config.architectures or []
        self.has_trained_head = any(a.endswith("ForSequenceClassification") for a in archs)
        if not self.has_trained_head:
            logger.warning("%s has no classifier head (architectures=%s): using a random head seeded with %d "
                           "(untrained start; scores are not meaningful until trained)",
                           self.model_dir, archs, self.config.init_seed)
            hf_config.num_labels = 1
        if hf_config.num_labels not in (1, 2):
            raise ValueError(f"{self.model_dir}: expected a 1- or 2-label classifier, "
                             f"got {hf_config.num_labels}")
        max_pos = getattr(hf_config, "max_position_embeddings", None)
        if max_pos is not None and self.config.max_length > max_pos:
            raise ValueError(f"max_length {self.config.max_length} exceeds the model's {max_pos} positions")
        with torch.random.fork_rng(devices=[]):  # reproducible head init without touching global RNG
            torch.manual_seed(self.config.init_seed)
            self.model = AutoModelForSequenceClassification.from_pretrained(
                str(self.model_dir), config=hf_config, dtype=torch.float32, use_safetensors=True, **kw)
        self.model.to(self.config.device).eval()
        self.num_labels = hf_config.num_labels
        self._cache: dict[tuple[str, str], float] = {}
        self._hits = self._misses = 0
        self._fingerprint: str | None = None
        self._fp32_fingerprint: str | None = None
        self._store = None
        self._fp32_runner = fast.torch_runner(self.model, self.config.device)
        # fp32 runs at once; any other path (auto included) waits for make_scorer to gate and select it.
        self.path = self.config.path
        self._runner: fast.Runner | None = self._fp32_runner if self.path == "fp32" else None
        self.gate_result: GateOutcome | None = None
        self.auto_choice: dict | None = None

    @property
    def fp32_runner(self) -> fast.Runner:
        """The fp32 torch reference runner (what the fidelity gate compares every path against)."""
        return self._fp32_runner

    @property
    def selected(self) -> bool:
        """Whether an inference path is in use (always for fp32; else after :meth:`use_path`)."""
        return self._runner is not None

    def use_path(self, path: str, runner: fast.Runner, *, gate: GateOutcome | None = None,
                 auto_choice: dict | None = None) -> None:
        """Score on ``path`` with ``runner`` from now on; a path other than fp32 needs a passed ``gate``.

        Called by :func:`relsum.scoring.factory.make_scorer`, which runs the gate (and ``auto``).
        """
        if path != "fp32" and (gate is None or not gate.passed):
            raise ValueError(f"path {path!r} needs a passed fidelity gate before it scores")
        self.path, self._runner, self.gate_result, self.auto_choice = path, runner, gate, auto_choice
        self._fingerprint, self._store = None, None  # both depend on the path
        self.clear_cache()

    def build_path_runner(self, path: str) -> fast.Runner:
        """The runner of ``path`` for this model (export/calibration cached), without the gate."""
        fast.check_path(path, self.config.device)
        use_types = "token_type_ids" in self.tokenizer.model_input_names
        return fast.build_runner(path, self.model, device=self.config.device,
                                 export_dir=self.store_root / ".onnx" / self.fp32_fingerprint,
                                 use_types=use_types, num_threads=self.config.num_threads,
                                 int8_fp32_layers=self.config.int8_fp32_layers,
                                 static_calib=self._static_calib() if path == "onnx-int8-static" else None)

    def _static_calib(self):
        """(tag, batches) calibrating the static int8 scales on this scorer's own tokenization."""
        from relsum.core.machine import native_int8
        from relsum.scoring import int8_static

        pairs = int8_static.calibration_pairs(self.config.int8_calib_dir, self.config.int8_calib_pairs)
        tag = int8_static.calibration_key(pairs, not native_int8())

        def batches():
            return (feats for _, feats in self.feature_batches(pairs, canonical=True))
        return tag, batches

    @property
    def store_root(self) -> Path:
        from relsum.scoring.store import default_root

        return Path(self.config.store_dir) if self.config.store_dir else default_root()

    @property
    def store(self):
        """The persistent :class:`~relsum.scoring.store.ScoreStore` of this fingerprint (None if off)."""
        if self.config.store and self._store is None:
            from relsum.scoring.store import ScoreStore

            self._store = ScoreStore(self.fingerprint, self.store_root)
            from relsum.scoring.store import write_meta

            write_meta(self._store.folder, {"path": self.path, "reason": self.path_reason(),
                                            "model_dir": str(self.model_dir)})
        return self._store

    def path_reason(self) -> str:
        """Why this scorer runs on its path (shown by ``relsum scores stats``)."""
        if self.auto_choice is not None:
            return f"auto: {self.auto_choice['reason']}"
        if self.path == "fp32":
            return "configured fp32 (the reference)"
        gate = self.gate_result.message() if self.gate_result else "gate not run"
        return f"configured {self.path}; {gate}"

    # ------------------------------------------------------------------ identity and cache
    @property
    def fingerprint(self) -> str:
        """sha256 of the weight + tokenizer files and the score-changing config; stable across runs.

        Weight files up to 2 GiB are hashed in full (streamed); larger ones by size plus their first
        and last 16 MiB. A random head's seed is included, since it is not in the weight files. The
        inference path is included unless it is fp32 (so fp32 fingerprints are unchanged from before
        paths existed): different arithmetic means different scores and different store keys.
        """
        if self._fingerprint is None:
            if not self.selected:  # auto, or a fast path not gated yet: which scores is not known
                raise RuntimeError(_UNSELECTED.format(path=self.path))
            self._fingerprint = self.path_fingerprint(self.path)
        return self._fingerprint

    def path_fingerprint(self, path: str) -> str:
        """The fingerprint this model and config have on inference ``path`` (int8: with its recipe)."""
        fp = self.fp32_fingerprint
        if path == "fp32":
            return fp
        key = path
        if "int8" in path:
            key += "|" + fast.int8_tag(self.model.config.num_hidden_layers, self.config.int8_fp32_layers)
        if path == "onnx-int8-static":
            key += "|calib=" + self._static_calib()[0]
        return hashlib.sha256(f"{fp}|path={key}".encode()).hexdigest()

    @property
    def fp32_fingerprint(self) -> str:
        """The fingerprint this model and config have on the fp32 reference path."""
        if self._fp32_fingerprint is None:
            h = hashlib.sha256()
            for path in self._weight_files:
                file_digest(path, h)
            for name in _TOKENIZER_FILES:
                if (self.model_dir / name).is_file():
                    file_digest(self.model_dir / name, h)
            head = "checkpoint" if self.has_trained_head else f"random-head-seed-{self.config.init_seed}"
            h.update(f"|max_length={self.config.max_length}|dtype={self.config.dtype}"
                     f"|join={JOIN_FORMAT_VERSION}|head={head}".encode())
            self._fp32_fingerprint = h.hexdigest()
        return self._fp32_fingerprint

    def cache_info(self) -> CacheInfo:
        return CacheInfo(self._hits, self._misses, len(self._cache))

    def clear_cache(self) -> None:
        self._cache.clear()
        self._hits = self._misses = 0

    # ------------------------------------------------------------------ scoring
    def score(self, queries: Sequence[str], titles: Sequence[str], texts: Sequence[str | None] | None = None,
              *, desc: str | None = None) -> np.ndarray:
        """r(q_i, [t_i; d_i]) for each row, float32 in [0, 1]; ``texts[i]`` None/"" means title only."""
        queries, titles = list(queries), list(titles)
        texts = [None] * len(titles) if texts is None else list(texts)
        if not len(queries) == len(titles) == len(texts):
            raise ValueError("queries/titles/texts lengths "
                             f"differ: {len(queries)}/{len(titles)}/{len(texts)}")
        docs = []
        for i, (title, text) in enumerate(zip(titles, texts, strict=True)):
            try:
                docs.append(join_title_text(title, text))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"row {i}: {exc}") from exc
        return self.score_pairs(list(zip(queries, docs, strict=True)), desc=desc)

    def score_pairs(self, pairs: Sequence[tuple[str, str]], *, desc: str | None = None) -> np.ndarray:
        """Score ready-made (query, doc) pairs; float32 in [0, 1], aligned with ``pairs``."""
        if not self.selected:
            raise RuntimeError(_UNSELECTED.format(path=self.path))
        index: dict[tuple[str, str], int] = {}
        inverse = np.empty(len(pairs), dtype=np.int64)
        for i, pair in enumerate(pairs):
            if not (isinstance(pair, tuple | list) and len(pair) == 2):
                raise ValueError(f"pair {i} is not a (query, doc) tuple: {pair!r}")
            q, d = pair
            if not isinstance(q, str) or not q.strip() or not isinstance(d, str) or not d.strip():
                raise ValueError(f"pair {i}: query and doc must be non-empty strings, got {pair!r}")
            inverse[i] = index.setdefault((q, d), len(index))
        unique = list(index)
        scores = np.empty(len(unique), dtype=np.float32)
        todo = []
        for j, pair in enumerate(unique):
            cached = self._cache.get(pair) if self.config.cache else None
            if cached is None:
                todo.append(j)
            else:
                scores[j] = cached
        self._hits += len(unique) - len(todo)
        self._misses += len(todo)
        if todo and self.store is not None:
            todo = self._from_store(unique, todo, scores)
        if todo:
            computed = self.compute([unique[j] for j in todo], desc=desc)
            scores[todo] = computed
            if self.store is not None:
                from relsum.scoring.store import text_hash

                self.store.append([unique[j][0] for j in todo], [text_hash(unique[j][1]) for j in todo],
                                  computed)
            if self.config.cache:
                self._cache.update(zip((unique[j] for j in todo), computed.tolist(), strict=True))
        return scores[inverse] if len(pairs) else np.empty(0, dtype=np.float32)

    def _from_store(self, unique: list[tuple[str, str]], todo: list[int], scores: np.ndarray) -> list[int]:
        """Fill ``scores`` from the persistent store (and the memory cache); return what is still missing."""
        from relsum.scoring.store import text_hash

        found_scores, found = self.store.lookup([unique[j][0] for j in todo],
                                                [text_hash(unique[j][1]) for j in todo])
        hit = [j for j, ok in zip(todo, found, strict=True) if ok]
        scores[hit] = found_scores[found]
        if self.config.cache:
            self._cache.update(zip((unique[j] for j in hit), found_scores[found].tolist(), strict=True))
        return [j for j, ok in zip(todo, found, strict=True) if not ok]

    def progress_enabled(self, n_pairs: int) -> bool:
        """Whether a call that computes ``n_pairs`` new pairs shows a progress bar."""
        if self.config.show_progress is None:
            return n_pairs > _AUTO_PROGRESS_MIN_PAIRS
        return self.config.show_progress

    def feature_batches(self, pairs: list[tuple[str, str]], *, canonical: bool = False
                        ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """(row indices, int64 features) per batch, as the runners take them (see
        :func:`relsum.scoring.batching.feature_batches`: token budget ``config.max_tokens_per_batch``)."""
        return batching.feature_batches(self.tokenizer, pairs, self.config, canonical=canonical)

    def compute(self, pairs: list[tuple[str, str]], desc: str | None = None,
                runner: fast.Runner | None = None) -> np.ndarray:
        """Scores of ``pairs`` from ``runner`` (default: the path in use), bypassing cache and store.

        The fidelity gate and ``path: auto`` pass other runners to compare paths on the same batches.
        """
        from tqdm.auto import tqdm

        runner = runner or self._runner
        if runner is None:
            raise RuntimeError(_UNSELECTED.format(path=self.path))
        out = np.empty(len(pairs), dtype=np.float32)
        bar = tqdm(total=len(pairs), desc=desc or "scoring pairs", unit="pair",
                   disable=not self.progress_enabled(len(pairs)))
        with bar, self.threads():
            for idx, feats in self.feature_batches(pairs,
                                                   canonical=getattr(runner, "batch_invariant", False)):
                logits = runner(feats).astype(np.float64)
                if self.num_labels == 1:
                    probs = 1.0 / (1.0 + np.exp(-logits[:, 0]))
                else:
                    z = np.exp(logits - logits.max(axis=1, keepdims=True))
                    probs = z[:, 1] / z.sum(axis=1)
                out[idx] = probs
                bar.update(len(idx))
        return out

    @contextlib.contextmanager
    def threads(self) -> Iterator[None]:
        """Set torch's intra-op threads to ``config.num_threads`` for a block (process-wide), then
        restore."""
        import torch

        if self.config.num_threads is None:
            yield
            return
        before = torch.get_num_threads()
        torch.set_num_threads(self.config.num_threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)
