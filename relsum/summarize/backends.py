"""Where summaries are generated: in-process Hugging Face (default), a Ray Data actor pool, or vLLM.

Every backend has the same small surface (:class:`SummarizerBackend`): ``summarize(titles, texts)``
returns one raw completion per product, in input order, and ``summarize_shards(shards)`` streams
results shard by shard so the job can commit each shard as soon as it is done. Error handling is
shared (:func:`summarize_safely`): a failing batch is retried item by item, so one poisonous product
costs one reject, not a shard.

| backend | where it runs | when to use |
| --- | --- | --- |
| ``hf`` | this process, ``generate_summaries`` (batched, length-sorted, left padding) | default, CPU, small catalogs |
| ``ray`` | Ray Data ``map_batches`` over an actor pool; each actor loads the policy once | many CPU/GPU workers, a cluster |
| ``vllm`` | ``vllm.LLM`` (continuous batching, paged attention), adapter merged first | GPUs, large catalogs |

Ray and vLLM are imported lazily: neither is needed for the default backend.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

logger = logging.getLogger(__name__)

SummarizeFn = Callable[[list[str], list[str]], list[str]]


@dataclass
class GenSettings:
    """What every backend needs to generate the same way (plain values, so Ray can ship it)."""

    model_dir: str
    adapter_dir: str | None = None
    max_new_tokens: int = 48
    max_prompt_tokens: int = 384
    batch_size: int = 16
    threads: int = 0


def summarize_safely(fn: SummarizeFn, titles: list[str], texts: list[str]) -> tuple[list[str], list[str | None]]:
    """(summaries, errors): ``fn`` on the whole batch; on failure, item by item; failures get an error text."""
    try:
        out = fn(titles, texts)
        if len(out) != len(titles):
            raise RuntimeError(f"backend returned {len(out)} summaries for {len(titles)} products")
        return list(out), [None] * len(titles)
    except Exception as exc:  # noqa: BLE001 - any model error is retried per item, then reported
        if len(titles) == 1:
            return [""], [f"{type(exc).__name__}: {exc}"[:500]]
        logger.warning("batch of %d failed (%s: %s); retrying one by one", len(titles), type(exc).__name__, exc)
    summaries, errors = [], []
    for title, text in zip(titles, texts, strict=True):
        (s,), (e,) = summarize_safely(fn, [title], [text])
        summaries.append(s)
        errors.append(e)
    return summaries, errors


class SummarizerBackend(Protocol):
    """Raw completions for (title, text) pairs, in input order."""

    def summarize(self, titles: Sequence[str], texts: Sequence[str]) -> list[str]: ...

    def summarize_shards(self, shards: Iterable[tuple[int, list[str], list[str]]]
                         ) -> Iterator[tuple[int, list[str], list[str | None]]]: ...

    def close(self) -> None: ...


class _Base(abc.ABC):
    """Default shard streaming: one ``summarize_safely`` call per shard, in order."""

    @abc.abstractmethod
    def summarize(self, titles: Sequence[str], texts: Sequence[str]) -> list[str]:
        """Summaries for ``titles`` / ``texts``, in input order."""

    def summarize_shards(self, shards: Iterable[tuple[int, list[str], list[str]]]
                         ) -> Iterator[tuple[int, list[str], list[str | None]]]:
        for shard_no, titles, texts in shards:
            summaries, errors = summarize_safely(self.summarize, titles, texts)
            yield shard_no, summaries, errors

    def close(self) -> None:
        return None


class _Generator:
    """Loads the policy once and generates with ``generate_summaries`` (used in-process and per Ray actor)."""

    def __init__(self, settings: GenSettings):
        import torch

        from relsum.training.policy import load_policy

        if settings.threads:
            torch.set_num_threads(settings.threads)
        self.settings = settings
        self.model, self.tokenizer = load_policy(settings.model_dir, settings.adapter_dir, merge=True)

    def __call__(self, titles: list[str], texts: list[str]) -> list[str]:
        from relsum.training.generate import generate_summaries

        s = self.settings
        return list(generate_summaries(self.model, self.tokenizer, titles, texts, max_new_tokens=s.max_new_tokens,
                                       batch_size=s.batch_size, do_sample=False, show_progress=False,
                                       max_prompt_tokens=s.max_prompt_tokens))


class HFBackend(_Base):
    """In-process generation with transformers: the embedded default (no extra dependencies)."""

    def __init__(self, settings: GenSettings):
        self._gen = _Generator(settings)

    def summarize(self, titles: Sequence[str], texts: Sequence[str]) -> list[str]:
        return self._gen(list(titles), list(texts))


class _RayActor:
    """Ray Data callable class: one policy per actor, loaded in ``__init__``, reused for every batch."""

    def __init__(self, settings: dict[str, Any]):
        self._gen = _Generator(GenSettings(**settings))

    def __call__(self, batch: Any) -> Any:
        summaries, errors = summarize_safely(self._gen, [str(t) for t in batch["title"]],
                                             [str(t) for t in batch["text"]])
        batch = batch[["idx", "shard"]].copy()
        batch["summary"], batch["error"] = summaries, errors
        return batch


class RayBackend(_Base):
    """Ray Data ``map_batches`` over an actor pool (``concurrency`` actors, each with the policy loaded once).

    ``summarize_shards`` runs *one* dataset over all shards given (so actors load the policy once per
    job, not per shard) and yields each shard as soon as all its rows are back, so the job still
    commits shard by shard. ``address=""`` starts a local Ray with ``num_cpus``; otherwise it joins
    the cluster at ``address`` (``"auto"`` or ``ray://host:10001``).
    """

    def __init__(self, settings: GenSettings, *, address: str = "", num_actors: int = 2, batch_size: int = 16,
                 num_cpus: int | None = None, cpus_per_actor: float = 1.0, gpus_per_actor: float = 0.0):
        try:
            import ray
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError('backend "ray" needs Ray Data: pip install "ray[data]==2.60.*"') from exc
        self.settings, self.num_actors, self.batch_size = settings, num_actors, batch_size
        self.cpus_per_actor, self.gpus_per_actor = cpus_per_actor, gpus_per_actor
        self._started = False
        if not ray.is_initialized():
            if address:
                ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
            else:
                ray.init(num_cpus=num_cpus or num_actors, include_dashboard=False, logging_level=logging.WARNING,
                         runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}})
            self._started = True
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.execution_options.preserve_order = True

    def _dataset(self, rows: list[dict[str, Any]]) -> Any:
        import pandas as pd
        import ray

        df = pd.DataFrame(rows, columns=["idx", "shard", "title", "text"])
        blocks = [df.iloc[i:i + self.batch_size] for i in range(0, len(df), self.batch_size)] or [df]
        settings = dict(vars(self.settings), threads=self.settings.threads or max(1, int(self.cpus_per_actor)))
        return ray.data.from_pandas(blocks).map_batches(
            _RayActor, fn_constructor_kwargs={"settings": settings}, concurrency=self.num_actors,
            batch_size=self.batch_size, batch_format="pandas", num_cpus=self.cpus_per_actor,
            num_gpus=self.gpus_per_actor or None)

    def summarize(self, titles: Sequence[str], texts: Sequence[str]) -> list[str]:
        rows = [{"idx": i, "shard": 0, "title": t, "text": x} for i, (t, x) in enumerate(zip(titles, texts, strict=True))]
        out = self._dataset(rows).to_pandas().sort_values("idx")
        bad = out[out["error"].notna()]
        if len(bad):
            raise RuntimeError(f"generation failed for {len(bad)} item(s): {bad['error'].iloc[0]}")
        return list(out["summary"])

    def summarize_shards(self, shards: Iterable[tuple[int, list[str], list[str]]]
                         ) -> Iterator[tuple[int, list[str], list[str | None]]]:
        rows, sizes, order, idx = [], {}, [], 0
        for shard_no, titles, texts in shards:
            sizes[shard_no] = len(titles)
            order.append(shard_no)
            for t, x in zip(titles, texts, strict=True):
                rows.append({"idx": idx, "shard": shard_no, "title": t, "text": x})
                idx += 1
        if not rows:
            yield from ((s, [], []) for s in order)
            return
        pending: dict[int, list[tuple[int, str, str | None]]] = {s: [] for s in order}
        for batch in self._dataset(rows).iter_batches(batch_format="pandas", batch_size=None):
            for i, shard_no, summary, error in zip(batch["idx"], batch["shard"], batch["summary"], batch["error"],
                                                   strict=True):
                pending[int(shard_no)].append((int(i), summary, None if error is None or error != error else error))
                if len(pending[int(shard_no)]) == sizes[int(shard_no)]:
                    done = sorted(pending.pop(int(shard_no)))
                    yield int(shard_no), [d[1] for d in done], [d[2] for d in done]
        for shard_no in [s for s in order if s in pending and sizes[s] == 0]:
            yield shard_no, [], []

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False


class VLLMBackend(_Base):
    """vLLM on a GPU: the adapter is merged into the base and saved to a temp folder that vLLM loads.

    Greedy decoding (``temperature=0``). Needs the ``vllm`` package and a CUDA GPU; otherwise a clear
    error is raised at construction. To fan out over many GPUs, run one job per catalog partition
    (or wrap this class in a Ray actor with ``num_gpus=1``).
    """

    def __init__(self, settings: GenSettings, *, gpu_memory_utilization: float = 0.9, tensor_parallel_size: int = 1,
                 dtype: str = "auto"):
        try:
            import vllm
        except ImportError as exc:
            raise RuntimeError('backend "vllm" needs the vllm package (pip install vllm) on a machine with '
                               'a CUDA GPU; use backend "hf" or "ray" on CPU') from exc
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError('backend "vllm" needs a CUDA GPU and none is visible; use backend "hf" or "ray"')
        from relsum.training.policy import load_policy, load_tokenizer
        from relsum.training.prompt import resolve_chat_template

        self.settings = settings
        self._tmp: str | None = None
        model_path = settings.model_dir
        if settings.adapter_dir:
            self._tmp = tempfile.mkdtemp(prefix="relsum-vllm-merged-")
            model, tokenizer = load_policy(settings.model_dir, settings.adapter_dir, merge=True)
            model.save_pretrained(self._tmp, safe_serialization=True)
            tokenizer.save_pretrained(self._tmp)
            del model
            model_path = self._tmp
        self.tokenizer = load_tokenizer(model_path)
        self.templated = resolve_chat_template(self.tokenizer, None)
        self.llm = vllm.LLM(model=model_path, tensor_parallel_size=tensor_parallel_size,
                            gpu_memory_utilization=gpu_memory_utilization, dtype=dtype, trust_remote_code=False)
        self.params = vllm.SamplingParams(temperature=0.0, max_tokens=settings.max_new_tokens)

    def summarize(self, titles: Sequence[str], texts: Sequence[str]) -> list[str]:
        from relsum.training.generate import postprocess
        from relsum.training.prompt import build_prompt, fit_text, policy_text

        out = [""] * len(titles)
        todo = [i for i, x in enumerate(texts) if x and str(x).strip()]
        strings = [policy_text(self.tokenizer, build_prompt(titles[i], fit_text(
            self.tokenizer, titles[i], texts[i], self.settings.max_prompt_tokens)), self.templated) for i in todo]
        # token ids, not strings: a chat-templated string already holds BOS, so vLLM must not add another
        ids = self.tokenizer(strings, add_special_tokens=not self.templated)["input_ids"]
        prompts = [{"prompt_token_ids": p} for p in ids]
        for i, res in zip(todo, self.llm.generate(prompts, self.params, use_tqdm=False), strict=True):
            out[i] = postprocess(res.outputs[0].text)
        return out

    def close(self) -> None:
        if self._tmp:
            with contextlib.suppress(OSError):
                shutil.rmtree(self._tmp)
            self._tmp = None


def make_backend(name: str, settings: GenSettings, **options: Any) -> SummarizerBackend:
    """``"hf"`` | ``"ray"`` | ``"vllm"`` -> a backend; ``options`` are the backend's keyword settings."""
    if name == "hf":
        return HFBackend(settings)
    if name == "ray":
        return RayBackend(settings, **options)
    if name == "vllm":
        return VLLMBackend(settings, **options)
    raise ValueError(f"unknown backend {name!r}; use 'hf', 'ray' or 'vllm'")


def policy_context_length(model_dir: str | Path) -> int | None:
    """The model's context window from its ``config.json`` (``max_position_embeddings``), if stated."""
    import json

    path = Path(model_dir) / "config.json"
    if not path.is_file():
        return None
    conf = json.loads(path.read_text(encoding="utf-8"))
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        if isinstance(conf.get(key), int):
            return int(conf[key])
    return None


def model_version_of(model_dir: str | Path, adapter_dir: str | Path | None = None) -> str:
    """A stable version stamp: hash of the model's config/tokenizer files, weight file names and sizes,
    and the adapter's config and weight *contents* (adapters are small; base weights are not re-read)."""
    import hashlib

    h = hashlib.sha256()
    base = Path(model_dir)
    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        if (base / name).is_file():
            h.update(name.encode() + b"\0" + (base / name).read_bytes())
    for path in sorted(base.glob("*")):
        if path.suffix in {".safetensors", ".bin", ".pt", ".gguf"}:
            h.update(f"{path.name}:{path.stat().st_size}".encode())
    if adapter_dir:
        for path in sorted(Path(adapter_dir).glob("*")):
            if path.suffix in {".json", ".safetensors", ".bin"} and path.is_file():
                h.update(path.name.encode() + b"\0" + path.read_bytes())
    return "mv-" + h.hexdigest()[:16]
