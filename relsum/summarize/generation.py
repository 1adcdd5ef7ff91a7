"""Planning and generating the job's shards: token-budget check, length-sorted shards, one commit per shard.

:mod:`relsum.summarize.job` decides *what* to generate; these two steps do it
(:func:`plan_shards` once per run, :func:`generate_shards` on every invocation until all shards are
committed). A shard counts as committed when its record (size and SHA-256 of its files) matches; a
missing, truncated or changed shard of an interrupted run is regenerated, with a warning.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd

from relsum.data.io import write_parquet_atomic
from relsum.policy.served import served_summary
from relsum.summarize.backends import GenSettings, make_backend
from relsum.summarize.best_of import BestOf
from relsum.summarize.config import SummarizeConfig
from relsum.summarize.output import fault_point, record_shard, shard_paths, shard_problem

logger = logging.getLogger(__name__)


def plan_shards(config: SummarizeConfig, todo: pd.DataFrame, budget: int,
                prompt: str = "auto") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(plan, over-length rejects): non-empty prompts checked against the token budget, sorted, sharded.

    The frame measured is the one generation builds: ``prompt`` variant, chat template when the tokenizer
    has one."""
    from relsum.policy.load import load_tokenizer
    from relsum.policy.prompt import build_prompt, policy_text, resolve_chat_template, resolve_variant

    over = pd.Series(False, index=todo.index)
    if len(todo):
        tok = load_tokenizer(config.model_dir)
        templated = resolve_chat_template(tok, None)
        variant = resolve_variant(prompt, templated)
        frames = [policy_text(tok, build_prompt(t, "", variant), templated, variant) for t in todo["title"]]
        lengths = [len(ids) for ids in tok(frames, add_special_tokens=not templated)["input_ids"]]
        over = pd.Series([n > budget for n in lengths], index=todo.index) & (todo["text"] != "")
        reasons = [f"over-length input: prompt frame + title is {n} tokens, budget {budget}" for n in lengths]
    rejects = todo.loc[over, ["product_id", "title"]].assign(
        reason=[r for r, o in zip(reasons, over, strict=True) if o] if over.any() else [],
        status="over_length")
    plan = todo.loc[~over, ["product_id", "title", "text", "content_key"]].copy()
    plan["_len"] = plan["text"].str.len()
    plan = plan.sort_values(["_len", "product_id"], ascending=[False, True],
                            ignore_index=True).drop(columns="_len")
    plan["shard"] = plan.index // config.shard_size
    return plan, rejects.reset_index(drop=True)


def generate_shards(config: SummarizeConfig, plan: pd.DataFrame, run_dir: Path, meta: dict[str, Any],
                    budget: int, best: BestOf | None = None) -> dict[str, float]:
    """Generate every shard of ``plan`` not committed intact yet; returns this invocation's timings.

    With ``best`` (a best_of run) the greedy summaries of products with logged queries compete with
    samples before the shard is written (:mod:`relsum.summarize.best_of`); its columns go in the shard."""
    from tqdm.auto import tqdm

    shards = sorted(plan["shard"].unique().tolist())
    todo = []
    for s in shards:
        problem = shard_problem(run_dir, s, set(plan.loc[plan["shard"] == s, "product_id"]))
        if problem is None:
            continue
        if problem != "not written":
            logger.warning("run %s shard %d is damaged (%s); regenerating it", run_dir.name, s, problem)
            shard_paths(run_dir, s)[2].unlink(missing_ok=True)
        todo.append(s)
    done_products = int(plan["shard"].isin([s for s in shards if s not in todo]).sum())
    stats = {"seconds": 0.0, "products": 0, "model_products": 0, "generated_tokens": 0,
             "resumed_shards": len(shards) - len(todo)}
    if not todo:
        return stats
    groups = {s: plan[plan["shard"] == s] for s in todo}
    needs_model = any((g["text"] != "").any() for g in groups.values())
    settings = GenSettings(config.model_dir, config.adapter_dir, config.max_new_tokens, budget,
                           config.batch_size,
                           config.threads, meta.get("prompt", "auto"), meta.get("dtype", "fp32"),
                           allow_base_mismatch=config.allow_base_mismatch)
    backend = None
    if needs_model:
        options: dict[str, Any] = {}
        if config.backend == "ray":
            options = {"address": config.ray_address, "num_actors": config.ray_num_actors,
                       "batch_size": config.ray_batch_size, "cpus_per_actor": config.ray_cpus_per_actor,
                       "gpus_per_actor": config.ray_gpus_per_actor,
                       "num_cpus": config.ray_num_cpus
                       or int(config.ray_num_actors * max(1.0, config.ray_cpus_per_actor))}
        elif config.backend == "vllm":
            options = {"gpu_memory_utilization": config.vllm_gpu_memory_utilization,
                       "tensor_parallel_size": config.vllm_tensor_parallel_size, "dtype": config.vllm_dtype}
        backend = make_backend(config.backend, settings, **options)
    generator = None
    if best is not None and needs_model:  # samples run in-process: the hf backend's policy, else a copy
        from relsum.summarize.backend_base import PolicyGenerator

        generator = getattr(backend, "_gen", None) or PolicyGenerator(settings)
    from relsum.policy.load import load_tokenizer

    tok = load_tokenizer(config.model_dir)
    inputs = ((s, list(g.loc[g["text"] != "", "title"]), list(g.loc[g["text"] != "", "text"])) for s,
              g in groups.items())
    bar = tqdm(total=len(plan), initial=done_products, unit="product", desc="summarize",
               disable=not config.show_progress)
    start = time.perf_counter()
    try:
        stream = backend.summarize_shards(inputs) if backend else ((s, [], []) for s, _, _ in inputs)
        for shard_no, raw, errors in stream:
            g = groups[shard_no]
            nonempty = (g["text"] != "").to_numpy()
            summary, status, err = [""] * len(g), ["empty_input"] * len(g), [None] * len(g)
            titles = g["title"].tolist()
            for pos, r, e in zip([i for i, ne in enumerate(nonempty) if ne], raw, errors, strict=True):
                summary[pos], status[pos], err[pos] = served_summary(r, config.max_summary_words,
                                                                     title=titles[pos]), "ok", e
                stats["generated_tokens"] += (len(tok(r, add_special_tokens=False)["input_ids"])
                                              if r and not e else 0)
            if best is not None:
                eligible = [st == "ok" and e is None for st, e in zip(status, err, strict=True)]
                summary, best_rows = best.choose(generator, shard_no, g, summary, eligible, budget,
                                                 settings.prompt)
            out = pd.DataFrame({"product_id": g["product_id"].to_numpy(), "summary": summary,
                                "summary_status": status,
                                "content_key": g["content_key"].to_numpy(),
                                "model_version": meta["model_version"],
                                "run_id": meta["run_id"], "generated_at": meta["generated_at"]})
            if best is not None:
                out = pd.concat([out, best_rows.set_index(out.index)], axis=1)
            failed = [e is not None for e in err]
            rej = g.loc[failed, ["product_id", "title"]].assign(
                reason=[f"generation error: {e}" for e in err if e is not None], status="generation_error")
            shard_file, rejects_file, _ = shard_paths(run_dir, shard_no)
            fault_point("shard")
            write_parquet_atomic(rej.reset_index(drop=True), rejects_file)
            fault_point("shard")
            write_parquet_atomic(out.loc[[not f for f in failed]].reset_index(drop=True), shard_file)
            fault_point("shard")
            record_shard(run_dir, shard_no)
            stats["products"] += len(g)
            stats["model_products"] += int(nonempty.sum())
            bar.update(len(g))
    finally:
        bar.close()
        if backend is not None:
            backend.close()
    stats["seconds"] = time.perf_counter() - start
    return stats
