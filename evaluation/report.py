"""The offline evaluation report: ``report.md`` + a self-contained ``report.html`` with plots.

Inputs are the dict of :func:`relsum.evaluation.offline.compute_offline_metrics` and the scored
judgment table it was computed from (for the precision-recall curves and per-query wins/losses).
Plots are drawn on explicit Agg canvases (no pyplot, no global backend switch), written as PNG
files beside ``report.md`` and embedded as base64 in the HTML, so the HTML can be mailed alone.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from relsum.data.atomic_dir import named_oserror
from relsum.data.io import atomic_path
from relsum.evaluation.offline import (
    SUBSETS,
    absolute_table,
    as_float,
    format_table,
    gains_table,
    ndcg_note,
    to_markdown,
)
from relsum.evaluation.power import mde_note, paired_table
from relsum.metrics.names import metrics_of
from relsum.metrics.ranking import per_query_ndcg_at_k, precision_recall_points

logger = logging.getLogger(__name__)

TIE_TOL = 1e-12  # |delta NDCG| at or below this counts as a tie


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _subset(scores: pd.DataFrame, subset: str) -> pd.DataFrame:
    return scores if subset == "full" else scores[scores["tail"].astype(bool)]


def pr_curves_png(metrics: Mapping[str, Any], scores: pd.DataFrame) -> bytes:
    """Precision-recall curves (label 1 vs rest) per candidate, one panel per subset."""
    cfg = metrics["config"]
    r_at_p_name = metrics_of(cfg)[0]
    p_min, name = cfg["min_precision"], cfg["metric_names"][r_at_p_name]
    fig = _new_figure(12, 5)
    axes = fig.subplots(1, len(SUBSETS), squeeze=False)[0]
    for ax, subset in zip(axes, SUBSETS, strict=True):
        df, sub = _subset(scores, subset), metrics["subsets"][subset]
        ax.set_title(f"Golden-{subset}: {sub['n_pairs']} pairs, {sub['n_positive_pairs']} label-1")
        ax.set(xlabel="recall (label 1)", ylabel="precision (label 1 vs 0.5/0)", xlim=(0, 1), ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        if sub["n_positive_pairs"] == 0:
            ax.text(0.5, 0.5, "no label-1 pairs", ha="center", va="center", transform=ax.transAxes)
            continue
        labels = df["label"].to_numpy(dtype=np.float64)
        for cand in cfg["candidates"]:
            _, precision, recall, _ = precision_recall_points(labels,
                                                              df[f"score_{cand}"].to_numpy(np.float64))
            # None after to_jsonable
            r_at_p = as_float(sub["candidates"][cand][r_at_p_name]["value"])
            (line,) = ax.plot(np.r_[0.0, recall], np.r_[1.0, precision], lw=1.6,
                              label=f"{cand} ({name} = {r_at_p:.3f})")
            ax.plot([r_at_p], [p_min], "o", color=line.get_color(), ms=6)
        ax.axhline(p_min, color="black", ls="--", lw=1, label=f"precision = {p_min:g}")
        ax.legend(loc="lower left", fontsize=9)
    return _png(fig)


def _ndcg_diffs(scores: pd.DataFrame, cand: str, baseline: str, k: int) -> np.ndarray:
    qids, gains = scores["query_id"].to_numpy(), scores["label"].to_numpy(np.float64)
    _, base = per_query_ndcg_at_k(qids, gains, scores[f"score_{baseline}"].to_numpy(np.float64), k)
    _, other = per_query_ndcg_at_k(qids, gains, scores[f"score_{cand}"].to_numpy(np.float64), k)
    diff = other - base
    return np.sort(diff[~np.isnan(diff)])[::-1]


def win_loss_counts(diffs: np.ndarray) -> tuple[int, int, int]:
    """(wins, losses, ties) of per-query metric differences, ties within :data:`TIE_TOL`."""
    return int((diffs > TIE_TOL).sum()), int((diffs < -TIE_TOL).sum()), int((np.abs(diffs) <= TIE_TOL).sum())


def win_loss_png(metrics: Mapping[str, Any], scores: pd.DataFrame) -> bytes | None:
    """Sorted per-query NDCG@k differences candidate - baseline; None when there is no candidate."""
    cfg = metrics["config"]
    others = [c for c in cfg["candidates"] if c != cfg["baseline"]]
    if not others:
        return None
    ndcg_name = cfg["metric_names"][metrics_of(cfg)[1]]
    fig = _new_figure(12, 3.2 * len(others))
    axes = fig.subplots(len(others), len(SUBSETS), squeeze=False)
    for row, cand in zip(axes, others, strict=True):
        for ax, subset in zip(row, SUBSETS, strict=True):
            diffs = _ndcg_diffs(_subset(scores, subset), cand, cfg["baseline"], cfg["k"])
            wins, losses, ties = win_loss_counts(diffs)
            ax.set_title(f"{cand} vs {cfg['baseline']} (Golden-{subset}): "
                         f"{wins} wins / {losses} losses / {ties} ties", fontsize=10)
            ax.set(xlabel="queries, sorted by difference", ylabel=f"Δ {ndcg_name}")
            ax.axhline(0, color="black", lw=0.8)
            if len(diffs) == 0:
                ax.text(0.5, 0.5, "no queries", ha="center", va="center", transform=ax.transAxes)
                continue
            x = np.arange(len(diffs))
            colors = np.where(diffs > TIE_TOL, "tab:green", np.where(diffs < -TIE_TOL, "tab:red", "grey"))
            if len(diffs) <= 1500:
                ax.bar(x, diffs, width=1.0, color=colors)
            else:  # thousands of bars are slow and alias; a filled step curve reads the same
                ax.fill_between(x, diffs, where=diffs > 0, step="mid", color="tab:green")
                ax.fill_between(x, diffs, where=diffs < 0, step="mid", color="tab:red")
            ax.set_xlim(-0.5, len(diffs) - 0.5)
            ax.set_ylim(-1.05, 1.05)
    return _png(fig)


def _html_table(df: pd.DataFrame) -> str:
    return df.to_html(escape=True, border=0, classes="tbl")


def _counts_text(metrics: Mapping[str, Any]) -> str:
    lines = []
    for subset in SUBSETS:
        sub = metrics["subsets"][subset]
        lines.append(
            f"- Golden-{subset}: {sub['n_queries']} queries, {sub['n_pairs']} judged pairs "
            f"({sub['n_positive_pairs']} label 1); {sub['n_queries_excluded_no_positive']} queries "
            f"without a positive label and {sub.get('n_queries_excluded_single_judged', 0)} with a single "
            f"judged product excluded from NDCG ({sub['n_queries_ndcg']} used)"
        )
    for name, cov in (metrics.get("summary_coverage") or {}).items():
        if (cov or {}).get("defects"):  # beside coverage, so a regression in the served form shows
            lines.append(f"- Summaries `{name}`: {defects_text(cov['defects'])}")
    return "\n".join(lines)


def defects_text(defects: Mapping[str, Any]) -> str:
    """``"of 120 summaries: prompt echo 0, boilerplate label 3, ..."``: one line of
    :func:`relsum.policy.served.summary_defects` counts."""
    kinds = [k for k in defects if k != "n"]
    return f"of {defects.get('n', 0)} summaries: " + ", ".join(f"{k.replace('_', ' ')} {defects[k]}"
                                                               for k in kinds)


_CSS = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
        ".tbl{border-collapse:collapse;margin:1em 0}.tbl td,.tbl th{border:1px solid #ccc;padding:4px 8px}"
        ".tbl th{background:#f3f3f3}img{max-width:100%}"
        "pre{background:#f7f7f7;padding:1em;white-space:pre-wrap}")


def write_report(
    metrics: Mapping[str, Any],
    scores: pd.DataFrame,
    out_dir: str | Path,
    title: str = "relsum offline evaluation",
    extra_sections: Mapping[str, str] | None = None,
) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and the plot PNGs into ``out_dir`` (atomically).

    ``extra_sections`` maps a heading to markdown text (e.g. mean reward, groundedness from later
    stages); it is copied verbatim into ``report.md`` and shown preformatted in the HTML.
    ``metrics`` may be the raw dict or its :func:`~relsum.evaluation.offline.to_jsonable` copy
    (``None`` for undefined values). Returns ``{"md", "html", "pr_curves", "win_loss"?}`` -> path.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = metrics["config"]
    pngs = {"pr_curves": pr_curves_png(metrics, scores)}
    wl = win_loss_png(metrics, scores)
    if wl is not None:
        pngs["win_loss"] = wl
    paths: dict[str, Path] = {}
    for key, data in pngs.items():
        paths[key] = out / f"{key}.png"
        with named_oserror(paths[key]), atomic_path(paths[key]) as tmp:
            tmp.write_bytes(data)

    setup = (f"Baseline `{cfg['baseline']}`; k = {cfg['k']}; min precision = {cfg['min_precision']:g}; "
             f"{round(100 * cfg['level'])}% paired percentile bootstrap over queries, "
             f"n_boot = {cfg['n_boot']}, seed = {cfg['seed']}.")
    if "lead" in cfg["candidates"] and metrics.get("lead_words"):  # the yardstick a summary must beat
        setup += (f" `lead` = title + the first {metrics['lead_words']} words of the catalog text "
                  "(the served summary's word cap).")
    captions = {"pr_curves": "Precision-recall curves (label 1 vs rest)",
                "win_loss": f"Per-query {cfg['metric_names'][metrics_of(cfg)[1]]} difference vs "
                            f"`{cfg['baseline']}`"}
    extra = dict(extra_sections or {})
    md = [f"# {title}", "", setup, "", "## Counts", "", _counts_text(metrics), "", "## Summary", "",
          format_table(metrics), "## Absolute metrics", "", to_markdown(absolute_table(metrics)), ""]
    for key in pngs:
        md += [f"## {captions[key]}", "", f"![{captions[key]}]({key}.png)", ""]
    for heading, text in extra.items():
        md += [f"## {heading}", "", text.rstrip(), ""]

    esc = html.escape
    body = [f"<h1>{esc(title)}</h1>", f"<p>{esc(setup)}</p>", "<h2>Counts</h2>",
            "<ul>" + "".join(f"<li>{esc(line[2:])}</li>"
                             for line in _counts_text(metrics).splitlines()) + "</ul>",
            *([f"<p><strong>Note:</strong> {esc(note)}</p>"] if (note := ndcg_note(metrics)) else []),
            f"<h2>Gain over {esc(cfg['baseline'])} in % "
            f"[{round(100 * cfg['level'])}% CI]</h2>", _html_table(gains_table(metrics, detectable=True)),
            *([f"<h2>Paired difference vs {esc(cfg['baseline'])} and what this set can detect</h2>",
               _html_table(paired_table(metrics)), f"<p>{esc(mde_note(metrics))}</p>"]
              if "mde" in cfg else []),
            "<h2>Absolute metrics</h2>", _html_table(absolute_table(metrics))]
    for key, data in pngs.items():
        b64 = base64.b64encode(data).decode("ascii")
        body += [f"<h2>{esc(captions[key])}</h2>", f'<img alt="{esc(captions[key])}" '
                                                   f'src="data:image/png;base64,{b64}">']
    for heading, text in extra.items():
        body += [f"<h2>{esc(heading)}</h2>", markdown_html(text)]
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")

    for key, name, text in (("md", "report.md", "\n".join(md)), ("html", "report.html", page)):
        paths[key] = out / name
        with named_oserror(paths[key]), atomic_path(paths[key]) as tmp:
            tmp.write_text(text, encoding="utf-8")
    logger.info("wrote offline report to %s", out)
    return paths


_BOLD = re.compile(r"\*\*(.+?)\*\*")
_PIPE = re.compile(r"(?<!\\)\|")


def _inline(text: str) -> str:
    """Escaped text with ``**bold**`` and ``code`` spans (all the markdown the extra sections use inline)."""
    out = _BOLD.sub(r"<strong>\1</strong>", html.escape(text))
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)


def markdown_html(text: str) -> str:
    """The small markdown subset of the report's extra sections as HTML: pipe tables, bullet lists and
    paragraphs (blank-line separated), bold and code spans; everything escaped first. Anything else stays
    readable text, so a section never needs a ``<pre>`` block."""
    blocks, parts = [], text.strip().split("\n\n")
    for part in parts:
        lines = [line for line in part.splitlines() if line.strip()]
        if lines and all(line.lstrip().startswith("|") for line in lines):
            # cells split on unescaped pipes; "\\|" inside a cell is a literal pipe (seller text has them)
            rows = [[c.strip().replace("\\|", "|") for c in _PIPE.split(line.strip()[1:].removesuffix("|"))]
                    for line in lines]
            rows = [r for r in rows if not all(set(c) <= set("-: ") for c in r)]
            head, *rest = rows
            cells = ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rest]
            blocks.append("<table><thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head)
                          + "</tr></thead><tbody>" + "".join(cells) + "</tbody></table>")
        elif lines and all(line.lstrip().startswith(("- ", "* ")) for line in lines):
            items = "".join(f"<li>{_inline(line.lstrip()[2:])}</li>" for line in lines)
            blocks.append(f"<ul>{items}</ul>")
        elif lines:
            blocks.append("<p>" + "<br>".join(_inline(line) for line in lines) + "</p>")
    return "\n".join(blocks)
