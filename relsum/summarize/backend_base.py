"""The contract every generation backend meets, and the pieces they share.

Owns what every engine's backend shares, so each backend module holds only its engine: the settings
shipped to workers, per-item retry of failing batches (:func:`summarize_safely`), the default shard
streaming and the in-process policy generator (all re-exported by :mod:`relsum.summarize.backends`).
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

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
    prompt: str = "auto"
    dtype: str = "fp32"
    allow_base_mismatch: bool = False


def summarize_safely(fn: SummarizeFn, titles: list[str],
                     texts: list[str]) -> tuple[list[str], list[str | None]]:
    """(summaries, errors): ``fn`` on the whole batch; on failure, item by item; failures get an error
    text."""
    try:
        out = fn(titles, texts)
        if len(out) != len(titles):
            raise RuntimeError(f"backend returned {len(out)} summaries for {len(titles)} products")
        return list(out), [None] * len(titles)
    except Exception as exc:  # noqa: BLE001 - any model error is retried per item, then reported
        if len(titles) == 1:
            return [""], [f"{type(exc).__name__}: {exc}"[:500]]
        logger.warning("batch of %d failed (%s: "
                       "%s); retrying one by one", len(titles), type(exc).__name__, exc)
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


class BackendBase(abc.ABC):
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


class PolicyGenerator:
    """Loads the policy once and generates with ``generate_summaries`` (used in-process and per Ray actor)."""

    def __init__(self, settings: GenSettings):
        import torch

        from relsum.policy.load import load_policy

        if settings.threads:
            torch.set_num_threads(settings.threads)
        self.settings = settings
        self.model, self.tokenizer = load_policy(settings.model_dir, settings.adapter_dir, merge=True,
                                                 dtype=settings.dtype,
                                                 allow_base_mismatch=settings.allow_base_mismatch)

    def __call__(self, titles: list[str], texts: list[str]) -> list[str]:
        from relsum.policy.generate import generate_summaries

        s = self.settings
        return list(generate_summaries(self.model, self.tokenizer, titles, texts,
                                       max_new_tokens=s.max_new_tokens,
                                       batch_size=s.batch_size, do_sample=False, show_progress=False,
                                       max_prompt_tokens=s.max_prompt_tokens, prompt=s.prompt))
