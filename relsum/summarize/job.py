"""The catalog summarization batch job: validated, planned, sharded, resumable and incremental.

On-disk layout under ``out_dir`` (everything written atomically: temp name + ``os.replace``)::

    manifest.json                 commit point: the last completed run (model version, config, counts, timings)
    index.parquet                 complete view: product_id -> content_key, run_id, shard (copy of the run's)
    rejects.csv                   every input row that is not in the output, with reason and status
    runs/<run_id>/plan.parquet    the products to generate (sorted by text length, cut into shards)
    runs/<run_id>/plan.json       written after the plan: run id, generated_at, shard count (plan is final)
    runs/<run_id>/shard-00000.parquet         outputs of one shard; its existence marks the shard done
    runs/<run_id>/shard-00000.rejects.parquet generation errors of that shard (written before the shard)
    runs/<run_id>/index.parquet, rejects.csv  the run's complete view, published when the run ends

Change detection: ``content_key = sha256(content_hash(title, description, attributes) + model version +
generation settings)``. With ``incremental`` only products whose key is not in the last committed index
are planned; the others are carried over (their index rows point at older shards). The run id is a hash
of the catalog's keys, the base run and the settings, so a killed job restarted with the same arguments
finds its own plan and finished shards and only does the rest; a catalog that is already fully
summarized is a no-op. Read the output with :func:`load_summaries` (each product exactly once).

Over-length input: the prompt is capped at ``min(max_input_tokens, context - max_new_tokens)`` tokens by
cutting the description (``fit_text``); a product whose frame + title alone exceed that budget cannot be
summarized and is rejected with reason ``over-length input``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from relsum.config import cfg, to_dict
from relsum.data.contracts import ContractConfig, validate_catalog
from relsum.data.io import read_table, write_csv_atomic, write_json_atomic, write_parquet_atomic
from relsum.paths import home
from relsum.summarize.backends import GenSettings, make_backend, model_version_of, policy_context_length
from relsum.summarize.postprocess import clean_summary

logger = logging.getLogger(__name__)

OUTPUT_COLUMNS = ["product_id", "summary", "summary_status", "content_key", "model_version", "run_id", "generated_at"]
INDEX_COLUMNS = ["product_id", "content_key", "run_id", "shard"]


@dataclasses.dataclass
class SummarizeConfig:
    """One summarization run over a catalog (see the module docstring for the output layout)."""

    catalog: str = cfg("", help="catalog source (csv/jsonl/parquet path or duckdb:<db>:<table|query>)")
    model_dir: str = cfg("", help="local causal-LM folder of the policy (base model)")
    adapter_dir: str | None = cfg(None, help="optional LoRA adapter folder, merged into the base for inference")
    out_dir: str | None = cfg(None, help="output folder; default <relsum home>/summaries")
    incremental: bool = cfg(True, help="only generate products whose content key is not in the last output")
    shard_size: int = cfg(256, help="products per shard (the unit of commit and of restart)")
    batch_size: int = cfg(16, help="generation batch size (in-process and vLLM)")
    max_new_tokens: int = cfg(48, help="generated tokens per summary")
    max_input_tokens: int = cfg(384, help="prompt token cap; the description is cut to fit, over-long frames rejected")
    max_summary_words: int = cfg(64, help="cap on the stored summary, in whitespace words")
    backend: Literal["hf", "ray", "vllm"] = cfg("hf", help="hf (in-process, default) | ray (Ray Data) | vllm (GPU)")
    threads: int = cfg(0, help="torch threads for the hf backend (0 = torch default)")
    ray_address: str = cfg("", help="Ray cluster address ('' = start a local Ray, 'auto' = the running cluster)")
    ray_num_actors: int = cfg(2, help="Ray actor pool size (each actor loads the policy once)")
    ray_batch_size: int = cfg(16, help="products per Ray batch")
    ray_num_cpus: int = cfg(0, help="CPUs for a local Ray (0 = ray_num_actors x ray_cpus_per_actor)")
    ray_cpus_per_actor: float = cfg(1.0, help="CPUs reserved per actor (also its torch threads)")
    ray_gpus_per_actor: float = cfg(0.0, help="GPUs reserved per actor")
    vllm_gpu_memory_utilization: float = cfg(0.9, help="vLLM share of GPU memory")
    vllm_tensor_parallel_size: int = cfg(1, help="vLLM tensor parallel degree (GPUs per model)")
    vllm_dtype: str = cfg("auto", help="vLLM dtype (auto, bfloat16, float16)")
    model_version: str = cfg("", help="version stamp; '' = hash of the model config, weight files and adapter")
    generated_at: str = cfg("", help="timestamp stored with each summary; '' = when the run's plan is made")
    show_progress: bool = cfg(True, help="tqdm progress bar with ETA over products")
    contract: ContractConfig = cfg(default_factory=ContractConfig, help="catalog contract settings")

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


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _read_manifest(out: Path) -> dict[str, Any] | None:
    path = out / "manifest.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def load_summaries(out_dir: str | Path) -> pd.DataFrame:
    """The committed output: one row per product (OUTPUT_COLUMNS), read through the last run's index."""
    out = Path(out_dir)
    manifest = _read_manifest(out)
    if manifest is None:
        raise FileNotFoundError(f"{out}: no manifest.json (no run has completed here)")
    index = pd.read_parquet(out / manifest["index"])
    parts = []
    for shard, rows in index.groupby("shard", sort=True):
        df = pd.read_parquet(out / shard)
        parts.append(df.merge(rows[["product_id", "run_id"]], on=["product_id", "run_id"]))
    result = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=OUTPUT_COLUMNS)
    return result[OUTPUT_COLUMNS].sort_values("product_id", ignore_index=True)


def _lock(out: Path) -> Any:
    handle = open(out / ".lock", "w")  # noqa: SIM115 - held for the job's lifetime, released by the kernel on exit
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.close()
        raise RuntimeError(f"{out}: another summarize job holds the lock") from exc
    return handle


def _clean_temps(out: Path) -> None:
    """Remove temp files left by a killed writer (``atomic_path`` names them ``.<name>.<random>.tmp``)."""
    for tmp in out.rglob(".*.tmp"):
        logger.info("removing partial file %s from an interrupted run", tmp)
        tmp.unlink(missing_ok=True)


def _plan(config: SummarizeConfig, todo: pd.DataFrame, budget: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(plan, over-length rejects): non-empty prompts checked against the token budget, sorted, sharded."""
    from relsum.training.policy import load_tokenizer
    from relsum.training.prompt import build_prompt, policy_text, resolve_chat_template

    over = pd.Series(False, index=todo.index)
    if len(todo):
        tok = load_tokenizer(config.model_dir)
        templated = resolve_chat_template(tok, None)
        frames = [policy_text(tok, build_prompt(t, ""), templated) for t in todo["title"]]
        lengths = [len(ids) for ids in tok(frames, add_special_tokens=not templated)["input_ids"]]
        over = pd.Series([n > budget for n in lengths], index=todo.index) & (todo["text"] != "")
        reasons = [f"over-length input: prompt frame + title is {n} tokens, budget {budget}" for n in lengths]
    rejects = todo.loc[over, ["product_id", "title"]].assign(
        reason=[r for r, o in zip(reasons, over, strict=True) if o] if over.any() else [], status="over_length")
    plan = todo.loc[~over, ["product_id", "title", "text", "content_key"]].copy()
    plan["_len"] = plan["text"].str.len()
    plan = plan.sort_values(["_len", "product_id"], ascending=[False, True], ignore_index=True).drop(columns="_len")
    plan["shard"] = plan.index // config.shard_size
    return plan, rejects.reset_index(drop=True)


def _generate(config: SummarizeConfig, plan: pd.DataFrame, run_dir: Path, meta: dict[str, Any],
              budget: int) -> dict[str, float]:
    """Generate every shard of ``plan`` that has no committed file yet; returns this invocation's timings."""
    from tqdm.auto import tqdm

    shards = sorted(plan["shard"].unique().tolist())
    todo = [s for s in shards if not (run_dir / f"shard-{s:05d}.parquet").exists()]
    done_products = int(plan["shard"].isin([s for s in shards if s not in todo]).sum())
    stats = {"seconds": 0.0, "products": 0, "model_products": 0, "generated_tokens": 0, "resumed_shards": len(shards) - len(todo)}
    if not todo:
        return stats
    groups = {s: plan[plan["shard"] == s] for s in todo}
    needs_model = any((g["text"] != "").any() for g in groups.values())
    settings = GenSettings(config.model_dir, config.adapter_dir, config.max_new_tokens, budget, config.batch_size,
                           config.threads)
    backend = None
    if needs_model:
        options: dict[str, Any] = {}
        if config.backend == "ray":
            options = {"address": config.ray_address, "num_actors": config.ray_num_actors,
                       "batch_size": config.ray_batch_size, "cpus_per_actor": config.ray_cpus_per_actor,
                       "gpus_per_actor": config.ray_gpus_per_actor,
                       "num_cpus": config.ray_num_cpus or int(config.ray_num_actors * max(1.0, config.ray_cpus_per_actor))}
        elif config.backend == "vllm":
            options = {"gpu_memory_utilization": config.vllm_gpu_memory_utilization,
                       "tensor_parallel_size": config.vllm_tensor_parallel_size, "dtype": config.vllm_dtype}
        backend = make_backend(config.backend, settings, **options)
    from relsum.training.policy import load_tokenizer

    tok = load_tokenizer(config.model_dir)
    inputs = ((s, list(g.loc[g["text"] != "", "title"]), list(g.loc[g["text"] != "", "text"])) for s, g in groups.items())
    bar = tqdm(total=len(plan), initial=done_products, unit="product", desc="summarize", disable=not config.show_progress)
    start = time.perf_counter()
    try:
        stream = backend.summarize_shards(inputs) if backend else ((s, [], []) for s, _, _ in inputs)
        for shard_no, raw, errors in stream:
            g = groups[shard_no]
            nonempty = (g["text"] != "").to_numpy()
            summary, status, err = [""] * len(g), ["empty_input"] * len(g), [None] * len(g)
            for pos, r, e in zip([i for i, ne in enumerate(nonempty) if ne], raw, errors, strict=True):
                summary[pos], status[pos], err[pos] = clean_summary(r, config.max_summary_words), "ok", e
                stats["generated_tokens"] += len(tok(r, add_special_tokens=False)["input_ids"]) if r and not e else 0
            out = pd.DataFrame({"product_id": g["product_id"].to_numpy(), "summary": summary, "summary_status": status,
                                "content_key": g["content_key"].to_numpy(), "model_version": meta["model_version"],
                                "run_id": meta["run_id"], "generated_at": meta["generated_at"]})
            failed = [e is not None for e in err]
            rej = g.loc[failed, ["product_id", "title"]].assign(
                reason=[f"generation error: {e}" for e in err if e is not None], status="generation_error")
            write_parquet_atomic(rej.reset_index(drop=True), run_dir / f"shard-{shard_no:05d}.rejects.parquet")
            write_parquet_atomic(out.loc[[not f for f in failed]].reset_index(drop=True),
                                 run_dir / f"shard-{shard_no:05d}.parquet")
            stats["products"] += len(g)
            stats["model_products"] += int(nonempty.sum())
            bar.update(len(g))
    finally:
        bar.close()
        if backend is not None:
            backend.close()
    stats["seconds"] = time.perf_counter() - start
    return stats


def _publish(out: Path, run_dir: Path) -> None:
    """Copy the run's index and rejects to the top level (after the manifest commit; redone on rerun)."""
    write_parquet_atomic(pd.read_parquet(run_dir / "index.parquet"), out / "index.parquet")
    write_csv_atomic(pd.read_csv(run_dir / "rejects.csv", dtype=str, keep_default_na=False), out / "rejects.csv")


def run_summarize(config: SummarizeConfig, *, base_dir: str | Path | None = None) -> dict[str, Any]:
    """Run (or resume) the job; returns the manifest. ``base_dir``: carry over from another output folder
    (e.g. the previous partition) when ``out_dir`` has no committed run yet."""
    if not config.catalog or not config.model_dir:
        raise ValueError("catalog and model_dir are required")
    out = Path(config.out_dir or home() / "summaries")
    out.mkdir(parents=True, exist_ok=True)
    lock = _lock(out)
    try:
        return _run_locked(config, out, Path(base_dir) if base_dir else None)
    finally:
        lock.close()


def _run_locked(config: SummarizeConfig, out: Path, base_dir: Path | None) -> dict[str, Any]:
    t0 = time.perf_counter()
    _clean_temps(out)
    result = validate_catalog(read_table(config.catalog), config.contract)
    valid = result.valid
    version = config.model_version or model_version_of(config.model_dir, config.adapter_dir)
    context = policy_context_length(config.model_dir)
    budget = min(config.max_input_tokens, context - config.max_new_tokens) if context else config.max_input_tokens
    gen_fp = {"model_version": version, "max_new_tokens": config.max_new_tokens, "budget": budget,
              "max_summary_words": config.max_summary_words}
    valid["content_key"] = [_sha([h, gen_fp])[:32] for h in valid["content_hash"]]
    digest = _sha(sorted(zip(valid["product_id"], valid["content_key"], strict=True)))
    committed = _read_manifest(out)
    if committed and committed.get("catalog_digest") == digest and committed.get("rows_in") == result.rows_in:
        logger.info("%s: catalog already summarized by run %s; nothing to do", out, committed["run_id"])
        _publish(out, out / "runs" / committed["run_id"])
        return committed
    base_root, base = (out, committed) if committed else (base_dir, _read_manifest(base_dir) if base_dir else None)
    prev = pd.DataFrame(columns=INDEX_COLUMNS)
    if base is not None and config.incremental:
        prev = pd.read_parquet(base_root / base["index"])
        prev["shard"] = [os.path.relpath(base_root.resolve() / s, out.resolve()) for s in prev["shard"]]
    run_id = "r" + _sha([digest, gen_fp, config.incremental, config.shard_size,
                         base and base["run_id"], str(base_root)])[:12]
    run_dir = out / "runs" / run_id
    carried = prev.merge(valid[["product_id", "content_key"]], on=["product_id", "content_key"])
    todo = valid[~valid["product_id"].isin(carried["product_id"])]
    if (run_dir / "plan.json").is_file():
        meta = json.loads((run_dir / "plan.json").read_text(encoding="utf-8"))
        plan = pd.read_parquet(run_dir / "plan.parquet")
        over = pd.read_parquet(run_dir / "plan_rejects.parquet")
        logger.info("resuming run %s: %d products planned", run_id, len(plan))
    else:
        plan, over = _plan(config, todo, budget)
        meta = {"run_id": run_id, "model_version": version, "shards": int(plan["shard"].nunique()),
                "generated_at": config.generated_at or dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        write_parquet_atomic(plan, run_dir / "plan.parquet")
        write_parquet_atomic(over, run_dir / "plan_rejects.parquet")
        write_json_atomic(meta, run_dir / "plan.json")
    stats = _generate(config, plan, run_dir, meta, budget)
    shard_files = [f"runs/{run_id}/shard-{s:05d}.parquet" for s in sorted(plan["shard"].unique())]
    frames = [pd.read_parquet(out / f).assign(shard=f) for f in shard_files]
    new = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*OUTPUT_COLUMNS, "shard"])
    index = pd.concat([carried[INDEX_COLUMNS], new[INDEX_COLUMNS]], ignore_index=True).sort_values("product_id",
                                                                                                  ignore_index=True)
    gen_rej = [pd.read_parquet(out / f.replace(".parquet", ".rejects.parquet")) for f in shard_files]
    rejects = pd.concat([result.rejects.assign(status="invalid"), over, *gen_rej], ignore_index=True)
    write_parquet_atomic(index, run_dir / "index.parquet")
    write_csv_atomic(rejects, run_dir / "rejects.csv")
    counts = {"rows_in": result.rows_in, "valid": len(valid), "planned": len(todo), "carried_over": len(carried),
              "generated": int((new["summary_status"] == "ok").sum()) if len(new) else 0,
              "empty": int((new["summary_status"] == "empty_input").sum()) if len(new) else 0,
              "empty_output": int(((new["summary_status"] == "ok") & (new["summary"] == "")).sum()) if len(new) else 0,
              "rejected": len(rejects), "rejected_invalid": len(result.rejects), "rejected_over_length": len(over),
              "rejected_generation": int(sum(len(r) for r in gen_rej)), "in_output": len(index)}
    secs = stats["seconds"]
    manifest = {
        "run_id": run_id, "model_version": version, "catalog_digest": digest, "rows_in": result.rows_in,
        "index": f"runs/{run_id}/index.parquet", "rejects": f"runs/{run_id}/rejects.csv",
        "base_run": base and base["run_id"], "generated_at": meta["generated_at"], "shards": shard_files,
        "counts": counts, "prompt_token_budget": budget, "config": to_dict(config),
        "timings": {"total_seconds": round(time.perf_counter() - t0, 3), "generation_seconds": round(secs, 3),
                    "products_this_invocation": stats["products"], "resumed_shards": stats["resumed_shards"],
                    "products_per_s": round(stats["products"] / secs, 3) if secs else None,
                    "generated_tokens": stats["generated_tokens"],
                    "tokens_per_s": round(stats["generated_tokens"] / secs, 3) if secs else None},
    }
    if counts["rows_in"] != counts["in_output"] + counts["rejected"]:
        raise RuntimeError(f"internal error: counts do not add up {counts}")
    write_json_atomic(manifest, out / "manifest.json")
    _publish(out, run_dir)
    logger.info("summarize run %s: %s", run_id, counts)
    return manifest
