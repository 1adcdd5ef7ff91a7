"""Stage ``compare``: MLflow runs side by side (metrics with CIs, key params, data/model versions, champion).

Reads the evaluation metrics that the retrain DAG logs on each training run (naming scheme in
:mod:`relsum.metrics.names`: ``eval.<subset>.<metric>[.lo|.hi]``, ``<metric>`` named with its cutoff
such as ``ndcg@5``; runs evaluated at different cutoffs are refused, not compared), the run's key
params, the data interval and scorer fingerprint, and the registered model versions of the run (marking
the one holding the ``champion`` alias). Prints a table and writes ``comparison.md`` /
``comparison.html`` with ``ndcg.png`` (NDCG@k with 95% CI error bars per run, full and tail) when
``out_dir`` is set.
"""

from __future__ import annotations

import html
import logging
import math
from pathlib import Path
from typing import Any

from relsum.core.errors import InputError, RelsumError
from relsum.lifecycle.registry import SUBSETS, TAG_GATE, TAG_INTERVAL, champion_version, client
from relsum.metrics.names import (
    STATS,
    check_same_cutoffs,
    eval_key,
    eval_metric_names,
    metric_label,
    mlflow_key,
    parse_metric_name,
    ranking_metrics,
)
from relsum.pipelines.configs import CompareConfig

logger = logging.getLogger(__name__)

KEY_PARAMS = ("algo", "grpo.learning_rate", "grpo.max_steps", "max_train_rows", "policy.model_dir",
              "policy.lora_r", "data.train_pairs", "data.heldout_pairs", "scorer.fingerprint")


def _param(params: dict[str, str], key: str) -> str:
    """A training param, as the train stage logs it (``relsum.<key>``; older runs: ``<key>``)."""
    return params.get(f"relsum.{key}", params.get(key, ""))


def collect(config: CompareConfig) -> list[dict[str, Any]]:
    """One record per run: ids, interval, versions (champion marked), metrics with CIs, key params.

    A store that is missing (nothing tracked yet: it is not created), garbled, locked past
    ``tracking.lock_wait_s``, or holds no such runs or experiment is an input or environment error (one
    line, exit 2)."""
    from relsum.lifecycle.tracking import store_problem

    try:
        return _collect(config)
    except Exception as exc:
        problem = None if isinstance(exc, RelsumError) else store_problem(exc, config.tracking)
        if problem is None:
            raise
        raise problem from exc


def _runs(config: CompareConfig, c) -> list:
    from mlflow.exceptions import MlflowException

    tracking = config.tracking
    where = tracking.resolved_uri()
    if config.runs:
        runs, unknown = [], []
        for run_id in config.runs:
            try:
                runs.append(c.get_run(run_id))
            except MlflowException:
                unknown.append(run_id)
        if unknown:
            raise InputError(f"unknown MLflow run id(s) {', '.join(unknown)} in {where}")
        return runs
    name = config.experiment or tracking.experiment
    exp = c.get_experiment_by_name(name)
    if exp is None:
        known = [e.name for e in c.search_experiments(max_results=20)]
        raise InputError(f"no MLflow experiment {name!r} in {where} (experiments there: "
                         f"{', '.join(map(repr, known)) or 'none'}; pick one with --experiment)")
    runs = c.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"],
                         max_results=config.max_runs)
    if not runs:
        raise InputError(f"MLflow experiment {name!r} in {where} has no runs yet (run `relsum train` first)")
    return runs


def _collect(config: CompareConfig) -> list[dict[str, Any]]:
    tracking = config.tracking
    c = client(tracking, must_exist=True)  # a reader: a missing local store is an error, never created
    runs = _runs(config, c)
    champ = champion_version(tracking, config.alias)
    try:
        versions = c.search_model_versions(f"name='{tracking.registered_model}'")
    except Exception:  # noqa: BLE001 - no registered model yet
        versions = []
    by_run: dict[str, list] = {}
    for v in versions:
        by_run.setdefault(v.run_id, []).append(v)
    found = {run.info.run_id: eval_metric_names(run.data.metrics) for run in runs}
    check_same_cutoffs({f"run {run.info.run_name or '-'} ({run.info.run_id[:8]})": found[run.info.run_id]
                        for run in runs}, "compare these runs")
    metrics = next((f for f in found.values() if f), ranking_metrics())  # none evaluated: the defaults
    records = []
    for run in runs:
        m, p, tags = run.data.metrics, run.data.params, run.data.tags
        mine = sorted(by_run.get(run.info.run_id, []), key=lambda v: int(v.version))
        rec = {"run_id": run.info.run_id, "run_name": run.info.run_name or "", "status": run.info.status,
               "interval": tags.get(TAG_INTERVAL, ""), "versions": [str(v.version) for v in mine],
               "gate": ",".join(v.tags.get(TAG_GATE, "") for v in mine if v.tags.get(TAG_GATE)),
               "champion": bool(champ and any(str(v.version) == str(champ.version) for v in mine)),
               "train_data": _param(p, "train_data"), "params": {k: _param(p, k) for k in KEY_PARAMS},
               "metrics": {}}
        for subset in SUBSETS:
            for metric in _ndcg_first(metrics):
                rec["metrics"][f"{subset}.{metric}"] = tuple(
                    m.get(mlflow_key(eval_key(subset, metric, stat)), math.nan) for stat in STATS)
        records.append(rec)
    return records


def _ndcg_first(metrics) -> list[str]:
    return sorted(metrics, key=lambda name: parse_metric_name(name)[0] != "ndcg")


def _metrics(records: list[dict[str, Any]]) -> list[str]:
    """The ranking metrics of the records, NDCG first (one set for all: :func:`collect` refuses mixed
    cutoffs)."""
    return _ndcg_first(dict.fromkeys(key.split(".", 1)[1] for r in records for key in r["metrics"]))


def _fmt(triple: tuple[float, float, float]) -> str:
    value, lo, hi = triple
    return "n/a" if math.isnan(value) else f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def table(records: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    metrics = _metrics(records) or _ndcg_first(ranking_metrics())
    header = ["run", "versions", "champion", "interval", *(f"{s} {metric_label(m)}" for s in SUBSETS
                                                           for m in metrics),
              *KEY_PARAMS, "train_data"]
    rows = [[r["run_name"] or r["run_id"][:8], ",".join(r["versions"]) or "-", "yes" if r["champion"] else "",
             r["interval"], *(_fmt(r["metrics"][f"{s}.{m}"]) for s in SUBSETS for m in metrics),
             *(str(r["params"].get(k, "")) for k in KEY_PARAMS), r["train_data"]] for r in records]
    return header, rows


def to_markdown(header: list[str], rows: list[list[str]]) -> str:
    esc = [[cell.replace("|", "\\|") for cell in row] for row in [header, *rows]]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in esc[1:]])


def plot(records: list[dict[str, Any]], path: Path) -> None:
    """NDCG@5 per run with 95% CI error bars, full and tail side by side; the champion's bars are outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from relsum.data.io import atomic_path

    ndcg = next(m for m in _metrics(records) if parse_metric_name(m)[0] == "ndcg")
    labels = [(r["run_name"] or r["run_id"][:8]) + (" *" if r["champion"] else "") for r in records]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(records) + 2), 3.8))
    width = 0.38
    for i, subset in enumerate(SUBSETS):
        vals = [r["metrics"][f"{subset}.{ndcg}"] for r in records]
        y = [v[0] for v in vals]
        err = [[max(v[0] - v[1], 0) if not math.isnan(v[1]) else 0 for v in vals],
               [max(v[2] - v[0], 0) if not math.isnan(v[2]) else 0 for v in vals]]
        xs = [j + (i - 0.5) * width for j in range(len(records))]
        ax.bar(xs, y, width, yerr=err, capsize=3, label=f"golden-{subset}",
               edgecolor=["black" if r["champion"] else "none" for r in records])
    ax.set_xticks(range(len(records)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"{metric_label(ndcg)} (95% CI)")
    ax.set_title(f"{metric_label(ndcg)} per run (* = champion)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def run(config: CompareConfig) -> dict[str, Any]:
    """Collect, render and (with out_dir) write the comparison; returns records, text table and paths."""
    from relsum.data.io import atomic_path

    records = collect(config)
    header, rows = table(records)
    text = to_markdown(header, rows)
    ndcg = next((metric_label(m) for m in _metrics(records) if parse_metric_name(m)[0] == "ndcg"), "NDCG")
    paths: dict[str, str] = {}
    if config.out_dir and records:
        out = Path(config.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        plot(records, out / "ndcg.png")
        paths["plot"] = str(out / "ndcg.png")
        intro = ("# relsum model comparison\n\nMLflow store "
                 f"`{config.tracking.resolved_uri()}`, registered model "
                 f"`{config.tracking.registered_model}`; metrics are value [95% CI] on the golden set.\n")
        if config.format in ("md", "both"):
            with atomic_path(out / "comparison.md") as tmp:
                tmp.write_text(f"{intro}\n{text}\n\n![{ndcg} per run](ndcg.png)\n", encoding="utf-8")
            paths["md"] = str(out / "comparison.md")
        if config.format in ("html", "both"):
            cells = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                            for row in rows)
            head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
            page = ("<!doctype html><meta charset='utf-8'><title>relsum "
                    f"comparison</title><h1>relsum model comparison"
                    f"</h1><p>{html.escape(intro.splitlines()[2])}</p><table border='1' "
                    f"cellspacing='0' cellpadding='4'>"
                    f"<tr>{head}</tr>{cells}</table><p><img src='ndcg.png' alt='{ndcg} per run'></p>")
            with atomic_path(out / "comparison.html") as tmp:
                tmp.write_text(page, encoding="utf-8")
            paths["html"] = str(out / "comparison.html")
    logger.info("compared %d runs", len(records))
    return {"records": records, "table": text, "paths": paths}
