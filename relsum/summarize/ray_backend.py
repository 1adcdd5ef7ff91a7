"""The Ray Data backend: ``map_batches`` over an actor pool, each actor with the policy loaded once.

In its own module (re-exported from :mod:`relsum.summarize.backends`) because it is engine-specific;
Ray is imported lazily, only when a :class:`RayBackend` is built, so the default backend never needs it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from relsum.summarize.backend_base import BackendBase, GenSettings, PolicyGenerator, summarize_safely


class _RayActor:
    """Ray Data callable class: one policy per actor, loaded in ``__init__``, reused for every batch."""

    def __init__(self, settings: dict[str, Any]):
        self._gen = PolicyGenerator(GenSettings(**settings))

    def __call__(self, batch: Any) -> Any:
        summaries, errors = summarize_safely(self._gen, [str(t) for t in batch["title"]],
                                             [str(t) for t in batch["text"]])
        batch = batch[["idx", "shard"]].copy()
        batch["summary"], batch["error"] = summaries, errors
        return batch


class RayBackend(BackendBase):
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
                ray.init(num_cpus=num_cpus or num_actors, include_dashboard=False,
                         logging_level=logging.WARNING,
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
        settings = dict(vars(self.settings), threads=self.settings.threads
                        or max(1, int(self.cpus_per_actor)))
        return ray.data.from_pandas(blocks).map_batches(
            _RayActor, fn_constructor_kwargs={"settings": settings}, concurrency=self.num_actors,
            batch_size=self.batch_size, batch_format="pandas", num_cpus=self.cpus_per_actor,
            num_gpus=self.gpus_per_actor or None)

    def summarize(self, titles: Sequence[str], texts: Sequence[str]) -> list[str]:
        rows = [{"idx": i, "shard": 0, "title": t, "text": x} for i,
                (t, x) in enumerate(zip(titles, texts, strict=True))]
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
            for i, shard_no, summary, error in zip(batch["idx"], batch["shard"], batch["summary"],
                                                   batch["error"], strict=True):
                pending[int(shard_no)].append((int(i), summary, None if error is None or error != error
                                               else error))
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
