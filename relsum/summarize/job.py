"""The catalog summarization batch job: validated, planned, sharded, resumable and incremental.

On-disk layout under ``out_dir`` (everything written atomically: temp name + ``os.replace``)::

    manifest.json                 commit point: the last completed run (model version, config, counts,
                                  summary_defects raw/served, timings) and ``files``: size + SHA-256 of
                                  its index, rejects and every shard it reads
    summarize.yaml                that run's config (absolute paths): ``relsum summarize --config`` on
                                  it repairs
    index.parquet                 complete view: product_id -> content_key, run_id, shard (copy of the run's)
    rejects.csv                   every input row that is not in the output, with reason and status
    runs/<run_id>/plan.parquet    the products to generate (sorted by text length, cut into shards)
    runs/<run_id>/plan.json       written after the plan: run id, generated_at, shard count (plan is final)
    runs/<run_id>/shard-00000.parquet         outputs of one shard
    runs/<run_id>/shard-00000.rejects.parquet generation errors of that shard (written before the shard)
    runs/<run_id>/shard-00000.done.json       size + SHA-256 of both, written last: marks the shard done
    runs/<run_id>/index.parquet, rejects.csv  the run's complete view, published when the run ends

Damage: every rerun checks the committed files against the manifest and an interrupted run's shards
against their ``done.json``; a missing, truncated or changed shard is logged and its products are
generated again (a repair run carries over every intact shard, incremental or not), a damaged manifest,
index or plan makes the job start that part over. :func:`read_job_output` refuses damaged output with an
error naming the file and the repair command. ``RELSUM_FAULT_AT`` is a test hook (see
:func:`relsum.summarize.output.fault_point`).

Change detection: ``content_key = sha256(content_hash(title, description, attributes) + model version +
generation settings + served-form version)`` (:data:`relsum.policy.served.SERVED_VERSION`: a new
clean-up re-serves every product). With ``incremental`` only products whose key is not in the last
committed index are planned; the others are carried over (their index rows point at older shards). The
run id is a hash of the catalog's keys, the base run and the settings, so a killed job restarted with
the same arguments finds its own plan and finished shards and only does the rest; a catalog that is
already fully summarized is a no-op. Read the output with :func:`read_job_output` (each product exactly once).
With ``best_of`` > 1 a product with logged queries also keys on the best_of settings, the reward model and
its query set (:mod:`relsum.summarize.best_of`), so a changed log re-selects only the products it changed.

Over-length input: the prompt is capped at ``min(max_input_tokens, context - max_new_tokens)`` tokens by
cutting the description (``fit_texts``); a product whose frame + title alone exceed that budget cannot be
summarized and is rejected with reason ``over-length input``.

The output helpers are in :mod:`relsum.summarize.output` and shard planning/generation in
:mod:`relsum.summarize.generation`; :func:`read_job_output` is re-exported here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from relsum.core.config import to_dict
from relsum.core.errors import (
    EnvironmentProblem,
    InputError,
    RelsumError,
    is_environment_oserror,
    os_error_text,
)
from relsum.core.paths import home
from relsum.data.contracts import validate_catalog
from relsum.data.io import atomic_path, read_table, write_csv_atomic, write_json_atomic, write_parquet_atomic
from relsum.policy.gguf import SMOLLM2
from relsum.policy.load import adapter_prompt, check_policy, prompt_cap, resolve_dtype, resolve_model_dir
from relsum.policy.served import SERVED_VERSION, defect_counts, raw_log
from relsum.scoring.model_files import find_safetensors
from relsum.summarize import best_of
from relsum.summarize.backends import model_version_of, policy_context_length
from relsum.summarize.config import SummarizeConfig
from relsum.summarize.generation import generate_shards, plan_shards
from relsum.summarize.output import (
    CONFIG_FILE,
    INDEX_COLUMNS,
    OUTPUT_COLUMNS,
    DamagedOutputError,
    clean_temps,
    damaged_files,
    fault_point,
    file_record,
    lock,
    publish,
    read_job_output,
    read_manifest,
    sha,
)

logger = logging.getLogger(__name__)

__all__ = ["INDEX_COLUMNS", "OUTPUT_COLUMNS", "read_job_output", "run_summarize"]


def run_summarize(config: SummarizeConfig, *, base_dir: str | Path | None = None) -> dict[str, Any]:
    """Run (or resume) the job; returns the manifest. ``base_dir``: carry over from another output folder
    (e.g. the previous partition) when ``out_dir`` has no committed run yet.

    Refused before any work, with one line saying what and where: a missing catalog or model, pickle
    weights (``pytorch_model.bin``, ``adapter_model.bin``), an output folder that cannot be created or
    locked. A path that becomes unwritable mid-run stops the job with an ``EnvironmentProblem``; the
    last committed output stays intact and a rerun resumes.
    """
    if not config.catalog or not config.model_dir:
        raise InputError("summarize needs a catalog and a policy model folder (catalog=..., model_dir=...)")
    if config.model_dir == SMOLLM2:  # the keyword names the converted folder (converted once)
        config = dataclasses.replace(config, model_dir=str(resolve_model_dir(config.model_dir)))
    find_safetensors(config.model_dir, "policy model")
    if config.adapter_dir:
        find_safetensors(config.adapter_dir, "adapter")
    out = Path(config.out_dir or home() / "summaries")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EnvironmentProblem("cannot create the summaries output "
                                 f"folder {out}: {os_error_text(exc)}") from exc
    handle = lock(out)
    try:
        # after the cheap folder and lock checks: loads the tokenizer and reads the weights' headers.
        # Damaged files, a chat template that is refused or runs away, an adapter of another base or shape
        try:
            check_policy(config.model_dir, config.adapter_dir, allow_base_mismatch=config.allow_base_mismatch)
        except RelsumError:
            if created:  # refused before any work: leave no folder behind
                (out / ".lock").unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    out.rmdir()
            raise
        return _run_locked(config, out, Path(base_dir) if base_dir else None)
    except OSError as exc:
        if isinstance(exc, RelsumError) or not is_environment_oserror(exc):
            raise
        raise EnvironmentProblem(f"summarize into {out} stopped: {os_error_text(exc)}; the "
                                 f"last committed output is intact, fix this and rerun to resume") from exc
    finally:
        handle.close()


def _verified(root: Path | None) -> tuple[dict[str, Any] | None, list[str]]:
    """(committed manifest of ``root`` or None, its damaged shards); a damaged manifest or index is None."""
    if root is None:
        return None, []
    try:
        manifest = read_manifest(root)
    except DamagedOutputError as exc:
        logger.warning("%s; summarizing as if no run had completed there", exc)
        return None, []
    if manifest is None:
        return None, []
    damaged = damaged_files(root, manifest)
    for name in {manifest["index"], manifest.get("rejects")} & set(damaged):
        logger.warning("%s: committed %s is %s; summarizing as if run %s had not completed", root, name,
                       damaged[name], manifest["run_id"])
        return None, []
    for name, problem in damaged.items():
        logger.warning("%s: committed shard %s is %s; regenerating its products", root, name, problem)
    return manifest, sorted(damaged)


def _load_plan(run_dir: Path, todo: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]] | None:
    """The run's stored (plan, over-length rejects, meta) if complete, readable and covering ``todo``."""
    if not (run_dir / "plan.json").is_file():
        return None
    try:
        meta = json.loads((run_dir / "plan.json").read_text(encoding="utf-8"))
        plan = pd.read_parquet(run_dir / "plan.parquet")
        over = pd.read_parquet(run_dir / "plan_rejects.parquet")
    except Exception as exc:  # noqa: BLE001 - any damage means: plan again
        logger.warning("run %s: stored plan is damaged "
                       "(%s: %s); planning again", run_dir.name, type(exc).__name__, exc)
        return None
    if sorted([*plan["product_id"], *over["product_id"]]) != sorted(todo["product_id"]):
        logger.warning("run %s: stored plan does not cover the products to do; planning again", run_dir.name)
        return None
    return plan, over, meta


def _repair_config(config: SummarizeConfig, out: Path) -> dict[str, Any]:
    """The run's config with absolute local paths, so ``relsum summarize --config`` on it works from
    anywhere."""
    data = to_dict(config)
    data["out_dir"] = str(out.resolve())
    for key in ("catalog", "model_dir", "adapter_dir", "search_log", "reward_model"):
        value = data.get(key)
        if value and not str(value).startswith("duckdb:") and Path(value).exists():
            data[key] = str(Path(value).resolve())
    return data


def _defects(new: pd.DataFrame, plan: pd.DataFrame, raw_texts: dict[str, list[str]]) -> dict[str, Any]:
    """Defect counts (:func:`relsum.policy.served.summary_defects`) of this run's generated summaries:
    raw (this invocation's completions; a shard resumed from an earlier one counts as served) and served."""
    ok = new[new["summary_status"] == "ok"] if len(new) else new
    titles = ok["product_id"].map(plan.set_index("product_id")["title"]).tolist() if len(ok) else []
    return {"scope": "generated this run", **defect_counts(ok["summary"].tolist() if len(ok) else [],
                                                          titles, raw_texts)}


def _run_locked(config: SummarizeConfig, out: Path, base_dir: Path | None) -> dict[str, Any]:
    t0 = time.perf_counter()
    clean_temps(out)
    result = validate_catalog(read_table(config.catalog), config.contract)
    valid = result.valid
    version = config.model_version or model_version_of(config.model_dir, config.adapter_dir)
    context = policy_context_length(config.model_dir)
    budget = min(config.max_input_tokens,
                 context - config.max_new_tokens) if context else config.max_input_tokens
    budget = prompt_cap(config.model_dir, budget)
    # serve with the prompt the adapter was trained with; precision changes greedy outputs, so both are
    # generation settings in the content key
    prompt = adapter_prompt(config.adapter_dir) if config.prompt == "auto" else config.prompt
    dtype = resolve_dtype(config.dtype, config.model_dir)
    gen_fp = {"model_version": version, "max_new_tokens": config.max_new_tokens, "budget": budget,
              "max_summary_words": config.max_summary_words, "prompt": prompt, "dtype": dtype,
              "served_version": SERVED_VERSION}  # a new served form re-serves every product
    best = best_of.prepare(config, valid) if config.best_of > 1 else None  # adds queries to the keys
    extra = best.key_parts(valid["product_id"].tolist()) if best else [[]] * len(valid)
    valid["content_key"] = [sha([h, gen_fp, *x])[:32]
                            for h, x in zip(valid["content_hash"], extra, strict=True)]
    digest = sha(sorted(zip(valid["product_id"], valid["content_key"], strict=True)))
    committed, bad = _verified(out)
    same = bool(committed and committed.get("catalog_digest") == digest
                and committed.get("rows_in") == result.rows_in)
    if same and not bad:
        logger.info("%s: catalog already summarized by run %s; nothing to do", out, committed["run_id"])
        publish(out, out / "runs" / committed["run_id"])
        return committed
    base_root, base = out, committed
    if committed is None:
        base_root = base_dir
        base, bad = _verified(base_dir)
    prev = pd.DataFrame(columns=INDEX_COLUMNS)
    records: dict[str, Any] = {}
    if base is not None and (config.incremental or same):  # same catalog: a repair keeps every intact shard
        prev = pd.read_parquet(base_root / base["index"])
        prev = prev[~prev["shard"].isin(bad)]
        moved = {s: os.path.relpath(base_root.resolve() / s, out.resolve()) for s in prev["shard"].unique()}
        records = {moved[s]: (base.get("files") or {}).get(s) for s in moved}
        prev["shard"] = prev["shard"].map(moved)
    run_id = "r" + sha([digest, gen_fp, config.incremental, config.shard_size, base and base["run_id"],
                        str(base_root), *([bad] if bad else [])])[:12]
    run_dir = out / "runs" / run_id
    carried = prev.merge(valid[["product_id", "content_key"]], on=["product_id", "content_key"])
    todo = valid[~valid["product_id"].isin(carried["product_id"])]
    stored = _load_plan(run_dir, todo)
    if stored is not None:
        plan, over, meta = stored
        logger.info("resuming run %s: %d products planned", run_id, len(plan))
    else:
        for old in run_dir.glob("shard-*"):  # outputs of an older plan of this run id
            old.unlink()
        plan, over = plan_shards(config, todo, budget, prompt)
        meta = {"run_id": run_id, "model_version": version, "shards": int(plan["shard"].nunique()),
                "prompt": prompt, "dtype": dtype,
                "generated_at": config.generated_at or dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        write_parquet_atomic(plan, run_dir / "plan.parquet")
        fault_point("plan")
        write_parquet_atomic(over, run_dir / "plan_rejects.parquet")
        fault_point("plan")
        write_json_atomic(meta, run_dir / "plan.json")
    with raw_log() as raw_texts:  # what the model wrote, before serving, for the defect counts
        stats = generate_shards(config, plan, run_dir, meta, budget, best)
    shard_files = [f"runs/{run_id}/shard-{s:05d}.parquet" for s in sorted(plan["shard"].unique())]
    frames = [pd.read_parquet(out / f).assign(shard=f) for f in shard_files]
    new = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*OUTPUT_COLUMNS, "shard"])
    index = pd.concat([carried[INDEX_COLUMNS], new[INDEX_COLUMNS]],
                      ignore_index=True).sort_values("product_id", ignore_index=True)
    gen_rej = [pd.read_parquet(out / f.replace(".parquet", ".rejects.parquet")) for f in shard_files]
    rejects = pd.concat([result.rejects.assign(status="invalid"), over, *gen_rej], ignore_index=True)
    fault_point("commit")
    write_parquet_atomic(index, run_dir / "index.parquet")
    write_csv_atomic(rejects, run_dir / "rejects.csv")
    fault_point("commit")
    for name in [f"runs/{run_id}/index.parquet", f"runs/{run_id}/rejects.csv", *shard_files]:
        records[name] = file_record(out / name)
    for name in index["shard"].unique():  # carried shards from an older version's manifest: record them now
        records[name] = records.get(name) or file_record(out / name)
    counts = {"rows_in": result.rows_in, "valid": len(valid), "planned": len(todo),
              "carried_over": len(carried),
              "generated": int((new["summary_status"] == "ok").sum()) if len(new) else 0,
              "empty": int((new["summary_status"] == "empty_input").sum()) if len(new) else 0,
              "empty_output": int(((new["summary_status"] == "ok") & (new["summary"] == "")).sum())
              if len(new) else 0,
              "rejected": len(rejects), "rejected_invalid": len(result.rejects),
              "rejected_over_length": len(over),
              "rejected_generation": int(sum(len(r) for r in gen_rej)), "in_output": len(index)}
    secs = stats["seconds"]
    manifest = {
        "run_id": run_id, "model_version": version, "catalog_digest": digest, "rows_in": result.rows_in,
        "index": f"runs/{run_id}/index.parquet", "rejects": f"runs/{run_id}/rejects.csv",
        "base_run": base and base["run_id"], "generated_at": meta["generated_at"], "shards": shard_files,
        "counts": counts, "summary_defects": _defects(new, plan, raw_texts),
        **({"best_of": best_of.manifest_section(new, best)} if best else {}),
        "prompt_token_budget": budget, "config": to_dict(config), "repaired_shards": bad,
        "files": {name: records[name] for name in sorted(records) if name in set(index["shard"]) or
                  name.startswith(f"runs/{run_id}/")},
        "timings": {"total_seconds": round(time.perf_counter() - t0, 3), "generation_seconds": round(secs, 3),
                    "products_this_invocation": stats["products"], "resumed_shards": stats["resumed_shards"],
                    "products_per_s": round(stats["products"] / secs, 3) if secs else None,
                    "generated_tokens": stats["generated_tokens"],
                    "tokens_per_s": round(stats["generated_tokens"] / secs, 3) if secs else None},
    }
    if counts["rows_in"] != counts["in_output"] + counts["rejected"]:
        raise RuntimeError(f"internal error: counts do not add up {counts}")
    with atomic_path(out / CONFIG_FILE) as tmp:
        tmp.write_text(yaml.safe_dump(_repair_config(config, out), sort_keys=False), encoding="utf-8")
    write_json_atomic(manifest, out / "manifest.json")  # the commit point
    fault_point("commit")
    publish(out, run_dir)
    logger.info("summarize run %s: %s", run_id, counts)
    return manifest
