"""write_report: files, embedded plots, tables, extra sections, empty tail."""

from __future__ import annotations

import base64
import re

import numpy as np
import pandas as pd

from relsum.evaluation.offline import compute_offline_metrics, to_jsonable
from relsum.evaluation.report import win_loss_counts, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _scores(n_queries: int = 40, seed: int = 0, with_tail: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 10, n_queries)
    q = np.repeat(np.arange(n_queries), sizes)
    labels = rng.choice([0.0, 0.5, 1.0], size=len(q), p=[0.5, 0.2, 0.3])
    tail = np.repeat(rng.random(n_queries) < 0.4, sizes) if with_tail else np.zeros(len(q), bool)
    df = pd.DataFrame({"query_id": [f"q{i}" for i in q], "product_id": np.arange(len(q)), "label": labels,
                       "tail": tail})
    for name, w in (("none", 0.4), ("desc", 0.8), ("relsum", 1.0)):
        df[f"score_{name}"] = np.round(w * labels + rng.normal(0.3, 0.2, len(q)), 2)
    return df


def test_report_files_images_and_tables(tmp_path):
    df = _scores()
    m = compute_offline_metrics(df, ["none", "desc", "relsum"], n_boot=50)
    paths = write_report(m, df, tmp_path / "out", title="unit report",
                         extra_sections={"Reward": "mean reward **0.71**", "Groundedness": "<b>98%</b>"})
    assert set(paths) == {"md", "html", "pr_curves", "win_loss"}
    assert all(p.exists() and p.stat().st_size > 0 for p in paths.values())
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]  # no temp left

    html = paths["html"].read_text(encoding="utf-8")
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 2
    assert all(base64.b64decode(img).startswith(PNG_MAGIC) for img in images)
    assert "<h1>unit report</h1>" in html
    assert "Golden-full R@90P" in html and "Golden-tail NDCG@5" in html
    gain = m["subsets"]["full"]["candidates"]["relsum"]["gain_pct"]["ndcg@5"]["value"]
    assert f"+{gain:.1f}% [" in html
    assert "&lt;b&gt;98%&lt;/b&gt;" in html  # extra sections are escaped in HTML
    assert f"{m['subsets']['full']['n_pairs']} judged pairs" in html

    md = paths["md"].read_text(encoding="utf-8")
    assert md.startswith("# unit report")
    assert "| candidate | Golden-full R@90P | Golden-full NDCG@5 |" in md
    assert "![Precision-recall curves (label 1 vs rest)](pr_curves.png)" in md
    assert "## Reward\n\nmean reward **0.71**" in md
    assert paths["pr_curves"].read_bytes().startswith(PNG_MAGIC)


def test_report_with_empty_tail_and_baseline_only(tmp_path):
    df = _scores(with_tail=False)
    m = to_jsonable(compute_offline_metrics(df, ["none"], n_boot=20))  # None for the empty tail
    assert m["subsets"]["tail"]["candidates"]["none"]["ndcg@5"]["value"] is None
    paths = write_report(m, df, tmp_path)
    assert set(paths) == {"md", "html", "pr_curves"}  # no candidate to compare -> no win/loss plot
    assert "Golden-tail: 0 queries" in paths["md"].read_text(encoding="utf-8")


def test_win_loss_counts():
    assert win_loss_counts(np.array([0.3, 0.0, 1e-15, -0.2, -0.1])) == (1, 2, 2)


def test_report_says_when_single_judged_queries_leave_ndcg_out(tmp_path):
    df = _scores(n_queries=12, with_tail=False)
    single = df.groupby("query_id").head(1).assign(query_id=lambda d: "s" + d["query_id"], label=1.0)
    scores = pd.concat([df.head(0), single.iloc[:9], df[df["query_id"].isin(["q0", "q1"])]],
                       ignore_index=True)
    metrics = to_jsonable(compute_offline_metrics(scores, ["desc"], n_boot=20))
    metrics["summary_coverage"] = {}
    paths = write_report(metrics, scores, tmp_path)
    md, page = paths["md"].read_text(), paths["html"].read_text()
    assert "9 with a single judged product excluded from NDCG" in md
    assert "Note: 9 of 11 queries have a single judged product" in md and "<strong>Note:</strong>" in page
    assert md.index("R@90P") < md.index("NDCG@5 |")  # the table leads with R@90P


def test_extra_sections_render_markdown_as_html_tables():
    """Side-by-side examples and groundedness are markdown tables: the HTML shows tables, escaped, with
    literal pipes from seller text kept inside their cell."""
    from relsum.evaluation.report import markdown_html

    out = markdown_html("**Query q1** (tail)\n\n| title | summary |\n|---|---|\n"
                        "| A <b> | x \\| y |\n\n- one\n- `two`")
    assert "<strong>Query q1</strong>" in out and "<pre" not in out
    assert "<td>A &lt;b&gt;</td><td>x | y</td>" in out
    assert "<ul><li>one</li><li><code>two</code></li></ul>" in out
