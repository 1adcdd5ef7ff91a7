"""Regenerate relsum/sample_data/ from the team's relevance data (../shared/data).

    python scripts/make_sample.py [--src ../shared/data]

What it writes (deterministic, seeded):
- products.jsonl: the catalog, byte for byte.
- golden/ and train/: a query split stratified by rarity tier (seed 20251123): half of each tier is the
  golden evaluation set, the other half trains the reward model and feeds the search log.
- search_log.csv: for each *train* query, its judged pairs (with their human label) plus the unjudged
  top-30 BM25 candidates over title + description + features (label empty: the pair-building step
  labels them with the scorer, l = r(q,[t;d])). Traffic is a seeded count drawn by rarity tier
  (head > torso > tail); event_date is spread over six weeks so date-range extraction has work to do.
  Golden queries never appear in the log, so the policy is never trained on golden labels.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from relsum.data.retriever import BM25

OUT = Path(__file__).resolve().parents[1] / "relsum" / "sample_data"
SEED = 20251123
CANDIDATES_PER_QUERY = 30
TRAFFIC = {"head": (200, 2000), "torso": (20, 200), "tail": (1, 20)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    src = Path(parser.parse_args().src)
    queries = pd.read_csv(src / "queries.csv", dtype=str, keep_default_na=False)
    judgments = pd.read_csv(src / "judgments.csv", dtype=str, keep_default_na=False)
    products = [json.loads(line) for line in (src / "products.jsonl").open(encoding="utf-8")]

    rng = random.Random(SEED)
    golden_ids: set[str] = set()
    for tier in ("head", "torso", "tail"):
        ids = sorted(queries.loc[queries.rarity_tier == tier, "query_id"])
        rng.shuffle(ids)
        golden_ids.update(ids[: len(ids) // 2])
    split = queries.query_id.map(lambda q: "golden" if q in golden_ids else "train")
    OUT.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / "products.jsonl", OUT / "products.jsonl")
    for name in ("golden", "train"):
        (OUT / name).mkdir(exist_ok=True)
        q = queries[split == name]
        q.to_csv(OUT / name / "queries.csv", index=False)
        judgments[judgments.query_id.isin(q.query_id)].to_csv(OUT / name / "judgments.csv", index=False)

    docs = [" ".join([p["title"], p.get("description") or "", p.get("features") or ""]) for p in products]
    bm25 = BM25(docs)
    labels = {(r.query_id, r.product_id): r.label for r in judgments.itertuples()}
    start = date(2026, 10, 5)
    rows = []
    for q in queries[split == "train"].itertuples():
        lo, hi = TRAFFIC[q.rarity_tier]
        judged = [pid for (qid, pid) in labels if qid == q.query_id]
        shown = [products[i]["product_id"] for i, _ in bm25.top_k(q.query, CANDIDATES_PER_QUERY)]
        for pid in dict.fromkeys(judged + shown):
            rows.append({
                "query_id": q.query_id, "query": q.query, "product_id": pid,
                "label": labels.get((q.query_id, pid), ""),
                "traffic": rng.randint(lo, hi),
                "event_date": (start + timedelta(days=rng.randrange(42))).isoformat(),
            })
    log = pd.DataFrame(rows)
    log.to_csv(OUT / "search_log.csv", index=False)
    print(f"golden queries {len(golden_ids)}, train queries {int((split == 'train').sum())}, "
          f"log pairs {len(log)} ({int((log.label != '').sum())} judged)")


if __name__ == "__main__":
    main()
