"""Best-of-N at catalog time: for products with logged queries, keep the candidate summary with the best
product-level reward on those queries; every other product keeps its greedy summary.

Why: GRPO raises the *expected* reward of a sampled summary, while the catalog serves one summary per
product. Where the search log says which queries a product is shown for, N samples plus the greedy summary
can be scored on exactly those queries and the best one kept: a test-time gain on the traffic that
matters. The greedy summary is candidate 0 and wins ties, so best-of-N never does worse than greedy on
this reward.

Reward of a summary ``s`` of product ``p`` (as training defines it, reused, not copied):
``mean over p's logged queries q of -|r(q, [t; s]) - l(q, p)|``
(:func:`relsum.policy.reward.product_relevance_rewards`), ``l`` the human label where the log has one,
else the proxy label ``r(q, [t; d])`` (:func:`relsum.pairs.filter.label_and_gap`). A product's queries are the
search log validated by :func:`relsum.data.contracts.validate_search_log` and deduplicated by the pairs
build's SQL (:func:`relsum.pairs.extract.extract_pairs`, all dates), so they are the (query,
label) set training would see.

Candidates: greedy + N samples at the training temperature, drawn with the shared prefill
(:func:`relsum.policy.generate.generate_summaries`), seeded per shard (``best_of_seed + shard``), so a
shard regenerated after a kill draws the same samples. All candidates of a shard are scored in one
batched scorer call (the score store caches them). Candidates are compared in their stored form
(:func:`relsum.policy.served.served_summary` with the job's word cap): the reward of what is served.

Content key: a product with logged queries adds :meth:`BestOf.key_parts` (best_of, temperature, seed, the
reward model's fingerprint and its query set) to its key, so a changed log or reward model re-selects it
and ``--incremental`` carries the rest over; a product without queries keeps its greedy key.

Per-product rows (:data:`BEST_OF_COLUMNS`) are extra columns of the shard parquet, so the shard's
``done.json`` covers them and a kill leaves them exactly once, like the summaries.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from relsum.policy.served import active_raw_log, raw_log, served_summary
from relsum.summarize.config import SummarizeConfig

logger = logging.getLogger(__name__)

#: Shard-parquet columns of a best_of run: queries scored (0: greedy kept without scoring), the picked
#: candidate (0 = greedy, k = k-th sample, -1 = not run), and the reward of greedy and of the kept one.
BEST_OF_COLUMNS = ["best_of_n_queries", "best_of_picked", "reward_greedy", "reward_selected"]


@dataclasses.dataclass
class BestOf:
    """What a best_of run needs beyond the greedy job: each product's (query, human label) rows and the
    scorer."""

    config: SummarizeConfig
    queries: dict[str, pd.DataFrame]  # product_id -> rows query_id, query, label (NaN: no human label)
    scorer: Any
    log_stats: dict[str, Any]
    seconds: float = 0.0

    @property
    def fingerprint(self) -> dict[str, Any]:
        c = self.config
        return {"best_of": c.best_of, "temperature": c.best_of_temperature, "seed": c.best_of_seed,
                "reward_model": self.scorer.fingerprint}

    def key_parts(self, product_ids: Sequence[str]) -> list[list[Any]]:
        """Per product, what its content key adds: nothing without logged queries (its greedy key), else
        the best_of settings and its (query_id, query, label) set."""
        fp = self.fingerprint
        out: list[list[Any]] = []
        for pid in product_ids:
            rows = self.queries.get(pid)
            if rows is None:
                out.append([])
                continue
            labels = [None if pd.isna(v) else round(float(v), 6) for v in rows["label"]]
            out.append([fp, sorted(zip(rows["query_id"], rows["query"], labels, strict=True))])
        return out

    def labels(self, product_ids: Sequence[str], titles: Sequence[str],
               texts: Sequence[str]) -> tuple[list[list[str]], list[list[float]]]:
        """(queries, labels) per product: the human label where the log has one, else the proxy label
        ``r(q, [t; d])``, made by :func:`relsum.pairs.filter.label_and_gap` as for training (one scorer
        call)."""
        from relsum.pairs.filter import label_and_gap

        parts = [self.queries[p].assign(title=t, text=d, _owner=i)
                 for i, (p, t, d) in enumerate(zip(product_ids, titles, texts, strict=True))]
        pairs = pd.concat(parts, ignore_index=True)
        unjudged = pairs["label"].isna().to_numpy()
        r_desc = np.full(len(pairs), np.nan, dtype=np.float32)
        if unjudged.any():  # judged pairs need no proxy: skip scoring them
            sub = pairs[unjudged]
            r_desc[unjudged] = self.scorer.score(sub["query"].tolist(), sub["title"].tolist(),
                                                 sub["text"].tolist())
        labelled = label_and_gap(pairs, r_desc, r_desc)  # the gap is not used here
        grouped = labelled.groupby("_owner", sort=True)
        return ([g["query"].tolist() for _, g in grouped],
                [g["label"].astype(float).tolist() for _, g in grouped])

    def choose(self, generator: Any, shard_no: int, frame: pd.DataFrame, summaries: list[str],
               eligible: Sequence[bool], budget: int, prompt: str) -> tuple[list[str], pd.DataFrame]:
        """(summaries with the best candidate in place of greedy, BEST_OF_COLUMNS rows aligned with
        ``frame``). ``eligible``: generated without error from a non-empty text."""
        start = time.perf_counter()
        rows = pd.DataFrame({"best_of_n_queries": 0, "best_of_picked": -1, "reward_greedy": np.nan,
                             "reward_selected": np.nan}, index=range(len(frame)))
        pos = [i for i, (ok, p) in enumerate(zip(eligible, frame["product_id"], strict=True))
               if ok and p in self.queries]
        if not pos:
            return summaries, rows
        sub = frame.iloc[pos]
        titles, texts = sub["title"].tolist(), sub["text"].tolist()
        samples, raw = self.sample(generator, titles, texts, shard_no, budget, prompt)
        candidates = [[summaries[i], *s] for i, s in zip(pos, samples, strict=True)]
        queries, labels = self.labels(sub["product_id"].tolist(), titles, texts)
        rewards = candidate_rewards(self.scorer, queries, titles, candidates, labels)
        picked = pick_best(rewards)
        out = list(summaries)
        for j, i in enumerate(pos):
            out[i] = candidates[j][picked[j]]
            rows.loc[i] = [len(queries[j]), int(picked[j]), rewards[j, 0], rewards[j, picked[j]]]
        merge_raw([out[i] for j, i in enumerate(pos) if picked[j] > 0], raw)
        self.seconds += time.perf_counter() - start
        return out, rows.astype({"best_of_n_queries": "int64", "best_of_picked": "int64"})

    def sample(self, generator: Any, titles: list[str], texts: list[str], shard_no: int, budget: int,
               prompt: str) -> tuple[list[list[str]], dict[str, list[str]]]:
        """(N stored-form samples per product (shared prefill, seeded by shard), their raw log). The raw
        texts are kept out of the job's defect log: only kept samples are served (:func:`merge_raw`)."""
        from relsum.policy.generate import generate_summaries

        c = self.config
        with raw_log() as own:
            samples = generate_summaries(generator.model, generator.tokenizer, titles, texts,
                                         max_new_tokens=c.max_new_tokens,
                                         batch_size=max(1, c.batch_size // c.best_of), do_sample=True,
                                         temperature=c.best_of_temperature, num_return_sequences=c.best_of,
                                         seed=c.best_of_seed + shard_no, show_progress=False,
                                         max_prompt_tokens=budget, prompt=prompt)
            served = [[served_summary(s, c.max_summary_words, title=t) for s in group]
                      for group, t in zip(samples, titles, strict=True)]
        return served, own


def merge_raw(kept: Sequence[str], own: dict[str, list[str]]) -> None:
    """Record in the job's :func:`raw_log` (if one is open) the raw completions behind the kept samples
    (``own``: the samples' log), so the manifest's raw defect counts cover what is served."""
    outer = active_raw_log()
    if outer is None:
        return
    for text in kept:
        for _ in range(4):  # follow the chain: word cap over served text over raw
            raws = own.get(text)
            if not raws:
                break
            outer.setdefault(text, []).append(raws[0])
            text = raws.pop(0)


def candidate_rewards(scorer: Any, queries: list[list[str]], titles: Sequence[str],
                      candidates: list[list[str]], labels: list[list[float]]) -> np.ndarray:
    """``(products, candidates)`` product-level rewards, every candidate of every product in one scorer
    call (:func:`relsum.policy.reward.product_relevance_rewards`)."""
    from relsum.policy.reward import product_relevance_rewards

    k = {len(c) for c in candidates}
    if len(k) != 1:
        raise ValueError(f"every product needs the same number of candidates, got {sorted(k)}")
    n = k.pop()
    flat = product_relevance_rewards(scorer, [q for q in queries for _ in range(n)],
                                     [t for t in titles for _ in range(n)],
                                     [s for c in candidates for s in c],
                                     [lab for lab in labels for _ in range(n)])
    return flat.reshape(len(candidates), n)


def pick_best(rewards: np.ndarray) -> np.ndarray:
    """Per product, the candidate with the highest reward; ties go to the lowest index (greedy first)."""
    return np.asarray(rewards).argmax(axis=1)


def prepare(config: SummarizeConfig, catalog: pd.DataFrame) -> BestOf:
    """Read, validate and deduplicate the search log against the valid ``catalog`` and load the reward
    model (its fingerprint is part of the content keys)."""
    from relsum.data.contracts import validate_search_log
    from relsum.data.io import read_table
    from relsum.pairs.extract import extract_pairs
    from relsum.scoring.factory import make_scorer
    from relsum.scoring.model_files import find_safetensors

    find_safetensors(config.reward_model, "reward model")
    log = validate_search_log(read_table(config.search_log), config.contract,
                              known_products=set(catalog["product_id"]))
    checked = log.summary()  # reject counts by reason kind (an unknown product: not in this catalog)
    if len(log.rejects):
        logger.warning("search log %s: %d of %d rows rejected (%s); their queries are not used for best_of",
                       config.search_log, len(log.rejects), log.rows_in, checked["reasons"])
    pairs, _ = extract_pairs(catalog, log.valid)  # all dates, undated rows included: what a pairs build sees
    queries = {str(p): g[["query_id", "query", "label"]].reset_index(drop=True)
               for p, g in pairs.groupby("product_id", sort=True)}
    stats = {"rows_in": log.rows_in, "rows_rejected": len(log.rejects),
             "rejected_by_reason": checked["reasons"],
             "products_with_queries": len(queries), "query_product_pairs": len(pairs)}
    logger.info("best_of=%d: %d of %d products have logged queries", config.best_of, len(queries),
                len(catalog))
    return BestOf(config, queries, make_scorer(config.reward_model, config.scorer), stats)


def manifest_section(new: pd.DataFrame, best: BestOf | None) -> dict[str, Any] | None:
    """The manifest's ``best_of`` section, over this run's generated shards (resumed ones included)."""

    def mean(values: pd.Series) -> float | None:
        return round(float(values.mean()), 6) if len(values) else None

    if best is None:
        return None
    cols = new.reindex(columns=BEST_OF_COLUMNS)
    scored = cols[cols["best_of_picked"].fillna(-1) >= 0]
    return {"scope": "generated this run", "n": best.config.best_of,
            "temperature": best.config.best_of_temperature, "seed": best.config.best_of_seed,
            "reward_model": best.config.reward_model, "reward_model_fingerprint": best.scorer.fingerprint,
            "search_log": best.log_stats, "products_scored": len(scored),
            "products_sample_picked": int((scored["best_of_picked"] > 0).sum()),
            "products_not_scored": int(len(cols) - len(scored)),
            "mean_reward_greedy": mean(scored["reward_greedy"]),
            "mean_reward_selected": mean(scored["reward_selected"]),
            "seconds_this_invocation": round(best.seconds, 3)}
