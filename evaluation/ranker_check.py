"""Does a ranker read product text? The check to run before spending GPU hours on a policy.

Why: the one frozen cross-encoder judge r(q, [t; d]) labels the pairs, rewards the policy and evaluates the
summaries. A judge whose score does not improve its ranking when it is shown text cannot reward a summary:
GRPO would then optimise noise. :func:`check_ranker` measures, on a golden set, with the one scorer:

* NDCG@k (full and tail) of title only (``none``), title + the catalog text (``desc``) and title + the
  first N words of that text (``lead``, N = the served summary's word cap: what a summary could carry);
* the training reward ``-|r - l|`` and the mean score per label (calibration);
* the summary headroom: the ``lead`` NDCG gain over ``none`` with a paired bootstrap CI over queries
  (:func:`relsum.evaluation.bootstrap.paired_bootstrap`) and a one-line verdict;
* counterfactual sensitivity: the mean score change when the product's own attribute facts, or another
  (seeded, random) product's facts, are appended to the title, per label. A judge that reads text lifts
  label 1 more than label 0 with its own facts and does not lift on foreign ones.

No I/O here: the stage (:mod:`relsum.pipelines.reward_model_check`) loads, writes and logs.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import numpy as np
import pandas as pd

from relsum.evaluation.bootstrap import paired_bootstrap
from relsum.evaluation.offline import MIN_JUDGED, format_gain, format_value, to_jsonable
from relsum.metrics.names import eval_key, metric_label, metric_name
from relsum.scoring.documents import lead_text
from relsum.scoring.protocol import RelevanceScorer

logger = logging.getLogger(__name__)

SUBSETS = ("full", "tail")
#: What each ranking candidate puts after the title: nothing, the catalog text, its first N words.
CANDIDATES = ("none", "desc", "lead")
#: The sensitivity documents: title + the product's own attribute facts, title + another product's facts.
FACTS = ("own", "foreign")
READS_TEXT, IGNORES_TEXT, UNDEFINED = "reads_text", "ignores_text", "undefined"
#: Prefix of the check's MLflow keys; the rest is :func:`relsum.metrics.names.eval_key`'s scheme.
KEY_PREFIX = "ranker_check"


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """What :func:`check_ranker` measured (JSON-ready: ``None`` for undefined values)."""

    scorer_fingerprint: str | None
    lead_words: int
    k: int
    n_boot: int
    seed: int
    level: float
    #: ``{subset: {"n_queries", "n_pairs", "n_queries_ndcg", "candidates": {name: {"ndcg@<k>": interval,
    #: "gain_pct": interval}}}}`` with intervals ``{"value", "lo", "hi"}``; gains are over ``none``.
    subsets: dict[str, Any]
    #: ``{candidate: {label: {"n", "mean_score", "mean_reward"}}}``, labels as text (``"0"``, ``"0.5"``).
    calibration: dict[str, Any]
    #: ``{label: {"n", "own_lift", "foreign_lift"}}`` over pairs whose product has facts, plus ``"all"``.
    sensitivity: dict[str, Any]
    n_pairs_without_facts: int
    verdict: str
    verdict_line: str
    warnings: list[str]

    @property
    def reads_text(self) -> bool:
        return self.verdict == READS_TEXT

    def headroom(self, subset: str = "full") -> dict[str, float | None]:
        """The ``lead`` NDCG gain over ``none`` in % with its CI (``{"value", "lo", "hi"}``)."""
        return self.subsets[subset]["candidates"]["lead"]["gain_pct"]

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "reads_text": self.reads_text}

    def mlflow_metrics(self) -> dict[str, float]:
        """Flat metrics: ``ranker_check.<eval_key>`` per NDCG figure, calibration and sensitivity keys."""
        out: dict[str, Any] = {}
        ndcg = metric_name("ndcg", k=self.k)
        for subset, sub in self.subsets.items():
            for cand, block in sub["candidates"].items():
                for stat in ("value", "lo", "hi"):
                    key = f"{KEY_PREFIX}.{eval_key(subset, ndcg, stat, cand)}"
                    out[key] = block[ndcg][stat]
                    if cand != "none":
                        key = f"{KEY_PREFIX}.{eval_key(subset, ndcg, stat, cand, gain=True)}"
                        out[key] = block["gain_pct"][stat]
        for cand, by_label in self.calibration.items():
            for label, row in by_label.items():
                out[f"{KEY_PREFIX}.calibration.{cand}.label_{label}.reward"] = row["mean_reward"]
                out[f"{KEY_PREFIX}.calibration.{cand}.label_{label}.score"] = row["mean_score"]
        for label, row in self.sensitivity.items():
            for kind in FACTS:
                out[f"{KEY_PREFIX}.sensitivity.label_{label}.{kind}_lift"] = row[f"{kind}_lift"]
        out[f"{KEY_PREFIX}.reads_text"] = float(self.reads_text)
        return {k: float(v) for k, v in out.items() if v is not None and math.isfinite(float(v))}


def check_pairs(golden) -> pd.DataFrame:
    """Judged pairs with query text, tail flag, title, text and attribute facts (``""`` where absent)."""
    pairs = golden.judgments.merge(golden.queries[["query_id", "query", "tail"]], on="query_id")
    catalog = golden.catalog.copy()
    if "attributes" not in catalog.columns:
        catalog["attributes"] = ""
    pairs = pairs.merge(catalog[["product_id", "title", "text", "attributes"]], on="product_id")
    for col in ("text", "attributes"):
        pairs[col] = pairs[col].fillna("").astype(str)
    return pairs.reset_index(drop=True)


def foreign_facts(products: pd.Series, facts: pd.Series, seed: int) -> dict[str, str]:
    """product_id -> the facts of another product with facts (seeded; never its own, never empty).

    Each product with facts gets the one at a random non-zero offset in a seeded order, so no product is
    paired with itself; products with different ids but identical facts are skipped where possible."""
    table = pd.DataFrame({"product_id": products, "facts": facts}).drop_duplicates("product_id")
    table = table[table["facts"].str.strip() != ""].reset_index(drop=True)
    m = len(table)
    if m < 2:
        return {}
    rng = np.random.default_rng(seed)
    order = rng.permutation(m)
    ids, texts = table["product_id"].to_numpy()[order], table["facts"].to_numpy()[order]
    out = {}
    for i in range(m):
        offsets = rng.permutation(np.arange(1, m))[:8]  # a few tries to avoid identical facts
        pick = next((j for j in ((i + o) % m for o in offsets) if texts[j] != texts[i]), (i + offsets[0]) % m)
        out[ids[i]] = texts[pick]
    return out


def _label_key(label: float) -> str:
    return f"{label:g}"


def _calibration(labels: np.ndarray, scores: dict[str, np.ndarray]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cand, s in scores.items():
        out[cand] = {}
        for label in np.unique(labels):
            sel = labels == label
            out[cand][_label_key(float(label))] = {
                "n": int(sel.sum()), "mean_score": float(s[sel].mean()),
                "mean_reward": float(-np.abs(s[sel] - label).mean())}
    return out


def _sensitivity(labels: np.ndarray, base: np.ndarray, own: np.ndarray, foreign: np.ndarray,
                 has_own: np.ndarray, has_foreign: np.ndarray) -> dict[str, Any]:
    out: dict[str, Any] = {}
    groups = [(_label_key(float(label)), labels == label) for label in np.unique(labels)]
    for name, sel in [*groups, ("all", np.ones(len(labels), dtype=bool))]:
        own_sel, foreign_sel = sel & has_own, sel & has_foreign
        out[name] = {"n": int(own_sel.sum()),
                     "own_lift": float((own - base)[own_sel].mean()) if own_sel.any() else float("nan"),
                     "foreign_lift": (float((foreign - base)[foreign_sel].mean()) if foreign_sel.any()
                                      else float("nan"))}
    return out


def _sensitivity_warnings(sensitivity: dict[str, Any], foreign_tolerance: float) -> list[str]:
    warnings = []
    top, bottom = sensitivity.get("1"), sensitivity.get("0")
    if top and bottom and top["n"] and bottom["n"] and not top["own_lift"] > bottom["own_lift"]:
        warnings.append(f"own facts lift label-1 pairs by {top['own_lift']:+.4f}, not more than label-0 "
                        f"pairs ({bottom['own_lift']:+.4f}): the score does not follow what the facts say")
    for label in ("0", "0.5"):
        row = sensitivity.get(label)
        if row and row["n"] and row["foreign_lift"] > foreign_tolerance:
            warnings.append(f"another product's facts lift label-{label} pairs by "
                            f"{row['foreign_lift']:+.4f}: the score rewards any appended text (length or "
                            "form), not relevant content")
    return warnings


def verdict_for(gain: dict[str, float | None], lead_words: int, ndcg_name: str) -> tuple[str, str]:
    """``(kind, line)`` from the ``lead`` gain over ``none``: reads text only when the CI's low end is > 0."""
    value, lo = gain.get("value"), gain.get("lo")
    lift = format_gain(gain)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return UNDEFINED, (f"undefined: title-only {ndcg_name} is 0 or undefined on this golden set "
                           "(no query with a positive label and 2+ judged products); judge more queries")
    if lo is not None and lo > 0:
        return READS_TEXT, f"reads text: lead-{lead_words} lifts {ndcg_name} by {lift}"
    return IGNORES_TEXT, (f"ignores text: lead-{lead_words} changes {ndcg_name} by {lift}; a ranker that "
                          "gains nothing from text cannot reward a summary — fix the judge before training "
                          "a policy")


def check_ranker(golden, scorer: RelevanceScorer, *, lead_words: int = 64, k: int = 5, n_boot: int = 1000,
                 seed: int = 0, level: float = 0.95, foreign_tolerance: float = 0.02) -> CheckResult:
    """Run the check (module docstring) on a loaded :class:`~relsum.data.golden.GoldenSet`.

    Every document kind is scored in one ``scorer.score`` call (5 calls). ``foreign_tolerance``: a mean
    score lift from another product's facts above this is reported as a warning.
    """
    if lead_words < 1:
        raise ValueError(f"lead_words must be >= 1, got {lead_words}")
    pairs = check_pairs(golden)
    if pairs.empty:
        from relsum.core.errors import InputError

        raise InputError("the golden set has no judged pair whose query and product validated: "
                         "nothing to check")
    queries, titles = pairs["query"].tolist(), pairs["title"].tolist()
    own_facts = pairs["attributes"].map(lambda t: lead_text(t, lead_words))
    foreign_map = foreign_facts(pairs["product_id"], own_facts, seed)
    foreign = pairs["product_id"].map(foreign_map).fillna("")
    docs = {"none": None, "desc": pairs["text"].tolist(),
            "lead": pairs["text"].map(lambda t: lead_text(t, lead_words)).tolist(),
            "own": own_facts.tolist(), "foreign": foreign.tolist()}
    scores = {}
    for name, texts in docs.items():
        logger.info("ranker check: scoring %d pairs as title%s", len(pairs),
                    "" if texts is None else f" + {name}")
        scores[name] = np.asarray(scorer.score(queries, titles, texts), dtype=np.float64)
    labels = pairs["label"].to_numpy(dtype=np.float64)

    subsets: dict[str, Any] = {}
    ndcg = metric_name("ndcg", k=k)
    for subset in SUBSETS:
        sel = np.ones(len(pairs), dtype=bool) if subset == "full" else pairs["tail"].astype(bool).to_numpy()
        qids = pairs["query_id"].to_numpy()[sel]
        boot = paired_bootstrap(qids, labels[sel], {c: scores[c][sel] for c in CANDIDATES}, baseline="none",
                                k=k, n_boot=n_boot, seed=seed, level=level, min_judged=MIN_JUDGED)
        counts = pd.Series(qids).value_counts()
        positive = pd.Series(labels[sel] > 0).groupby(qids).any()
        subsets[subset] = {
            "n_queries": int(len(counts)), "n_pairs": int(sel.sum()),
            "n_queries_ndcg": int((positive & (counts.reindex(positive.index) >= MIN_JUDGED)).sum()),
            "candidates": {c: {ndcg: boot[c][ndcg].as_dict(),
                               "gain_pct": boot[c]["gain_pct"][ndcg].as_dict()} for c in CANDIDATES}}
    has_own = own_facts.str.strip().ne("").to_numpy()
    has_foreign = foreign.str.strip().ne("").to_numpy()
    sensitivity = _sensitivity(labels, scores["none"], scores["own"], scores["foreign"], has_own, has_foreign)
    subsets = to_jsonable(subsets)
    ndcg_name = metric_label(ndcg)
    verdict, line = verdict_for(subsets["full"]["candidates"]["lead"]["gain_pct"], lead_words, ndcg_name)
    warnings = _sensitivity_warnings(sensitivity, foreign_tolerance)
    if not has_own.any():
        warnings.append("no judged product has attribute facts: the sensitivity check could not run")
    logger.info("ranker check: %s", line)
    return CheckResult(
        scorer_fingerprint=getattr(scorer, "fingerprint", None), lead_words=int(lead_words), k=int(k),
        n_boot=int(n_boot), seed=int(seed), level=float(level), subsets=subsets,
        calibration=to_jsonable(_calibration(labels, {c: scores[c] for c in CANDIDATES})),
        sensitivity=to_jsonable(sensitivity), n_pairs_without_facts=int((~has_own).sum()),
        verdict=verdict, verdict_line=line, warnings=warnings)


def _num(x: float | None, fmt: str) -> str:
    return "n/a" if x is None else format(x, fmt)


def format_check(result: CheckResult) -> str:
    """The check as terminal/markdown text: verdict, then the NDCG, calibration and sensitivity tables."""
    ndcg = metric_name("ndcg", k=result.k)
    ndcg_name = metric_label(ndcg)
    names = {"none": "title only", "desc": "title + text", "lead": f"title + lead-{result.lead_words}"}
    lines = [f"Verdict: {result.verdict_line}", ""]
    lines += [f"{ndcg_name} [{round(100 * result.level)}% CI; gain over title only, paired bootstrap over "
              f"queries, n_boot={result.n_boot}]", "",
              "| subset | document | " + ndcg_name + " | gain over title only |", "|---|---|---|---|"]
    for subset, sub in result.subsets.items():
        for cand, block in sub["candidates"].items():
            gain = "–" if cand == "none" else format_gain(block["gain_pct"])
            lines.append(f"| {subset} ({sub['n_queries_ndcg']} queries) | {names[cand]} | "
                         f"{format_value(block[ndcg])} | {gain} |")
    labels = list(result.calibration["none"])
    lines += ["", "Calibration: mean score and training reward −|r − l| per label", "",
              "| document | " + " | ".join(f"label {lb} (n, score, reward)" for lb in labels) + " |",
              "|---|" + "---|" * len(labels)]
    for cand, by_label in result.calibration.items():
        cells = [f"{row['n']}, {_num(row['mean_score'], '.3f')}, {_num(row['mean_reward'], '.3f')}"
                 for row in by_label.values()]
        lines.append(f"| {names[cand]} | " + " | ".join(cells) + " |")
    lines += ["", f"Counterfactual sensitivity: mean score change when facts (capped at {result.lead_words} "
              "words) are appended to the title", "",
              "| label | pairs | own facts | another product's facts |", "|---|---|---|---|"]
    for label, row in result.sensitivity.items():
        lines.append(f"| {label} | {row['n']} | {_num(row['own_lift'], '+.4f')} | "
                     f"{_num(row['foreign_lift'], '+.4f')} |")
    if result.n_pairs_without_facts:
        lines.append(f"\n{result.n_pairs_without_facts} judged pair(s) have no attribute facts and are left "
                     "out of the sensitivity rows.")
    lines += [f"\nWarning: {w}" for w in result.warnings]
    return "\n".join(lines) + "\n"
