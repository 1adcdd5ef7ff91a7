"""Measure reward models on the bundled data: NDCG@5 on title / title + text / title + lead-40 and the
training reward -|r - l| on title + text, on the golden split and by cross-validation over the train
split's queries (the CV figures are what the defaults were chosen by; the golden ones are only reported).

    python benchmarks/measure_reward_model.py --model DIR [--old-model DIR] [--cv-folds 3] [--json OUT]

Rows: the untrained MiniLM bi-encoder (cosine of mean-pooled embeddings: a ranker, not calibrated, so no
reward), the old bootstrap (``--old-model``, or retrained with the old recipe by ``--train-old``) and the
new bootstrap (``--model``, or trained here with the stage defaults when the folder has no model).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

OLD_RECIPE = dict(distill=False, calibrate=False, epochs=1, max_length=128, batch_size=16, bf16="off")


def bi_encoder_row(pairs, views) -> dict:
    """Cosine of query and document embeddings of the bundled MiniLM, per document view."""
    from relsum.core.paths import minilm_dir
    from relsum.metrics.ranking import mean_ndcg_at_k
    from relsum.scoring.distill import embed

    q = embed(minilm_dir(), pairs["query"].tolist(), 256)
    out = {}
    for name, docs in views.items():
        d = embed(minilm_dir(), docs, 256)
        out[f"ndcg5_{name}"] = mean_ndcg_at_k(pairs["query_id"].to_numpy(), pairs["label"].to_numpy(float),
                                              (q * d).sum(1), k=5).mean
    out["reward"] = float("nan")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="new bootstrap folder (trained here if empty)")
    parser.add_argument("--old-model", default="", help="a model trained with the old recipe")
    parser.add_argument("--train-old", default="", help="train the old recipe into this folder")
    parser.add_argument("--cv-folds", type=int, default=0, help="also cross-validate the new recipe (0 = no)")
    parser.add_argument("--cv-old", action="store_true", help="also cross-validate the old recipe")
    parser.add_argument("--json", default="", help="write the figures here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)

    from pathlib import Path

    from relsum.core.machine import describe
    from relsum.core.paths import SAMPLE_DIR
    from relsum.pipelines.configs import RewardModelStageConfig
    from relsum.pipelines.reward_model import judged_pairs, run, train_log_pairs
    from relsum.scoring.config import RewardModelConfig
    from relsum.scoring.documents import join_title_text, lead_doc
    from relsum.scoring.reward_model import held_out_report

    print(describe())
    golden, eval_ = judged_pairs(str(SAMPLE_DIR / "golden"))
    train_golden, train = judged_pairs(str(SAMPLE_DIR / "train"))
    views = {"title": eval_["title"].tolist(),
             "full": [join_title_text(t, x) for t, x in zip(eval_["title"], eval_["text"], strict=True)],
             "lead": [lead_doc(t, x, 40) for t, x in zip(eval_["title"], eval_["text"], strict=True)]}
    rows: dict[str, dict] = {"bi-encoder cosine (untrained MiniLM)": {"golden": bi_encoder_row(eval_, views)}}
    report_cfg = RewardModelConfig()
    seconds: dict[str, float] = {}
    if args.train_old:
        start = time.monotonic()
        run(RewardModelStageConfig(out_dir=args.train_old, search_log="", **OLD_RECIPE))
        seconds["old"] = time.monotonic() - start
        args.old_model = args.train_old
    if args.old_model:
        rows["old bootstrap (1 epoch, judged pairs only)"] = {
            "golden": held_out_report(Path(args.old_model), eval_, report_cfg)}
    if not (Path(args.model) / "model.safetensors").exists():
        start = time.monotonic()
        run(RewardModelStageConfig(out_dir=args.model))
        seconds["new"] = time.monotonic() - start
    rows["new bootstrap (distilled + judged, calibrated)"] = {
        "golden": held_out_report(Path(args.model), eval_, report_cfg)}
    catalog = train_golden.catalog[["product_id", "title", "text"]]
    logged = train_log_pairs(str(SAMPLE_DIR / "search_log.csv"), golden.queries)
    if args.cv_folds:
        from relsum.scoring.reward_cv import cross_validate

        recipes = {"new bootstrap (distilled + judged, calibrated)": RewardModelConfig()}
        if args.cv_old:
            recipes["old bootstrap (1 epoch, judged pairs only)"] = RewardModelConfig(**OLD_RECIPE)
        for name, config in recipes.items():
            result = cross_validate(train, config, catalog=catalog, logged=logged, n_folds=args.cv_folds)
            rows.setdefault(name, {})["train_cv"] = result["mean"]

    def fmt(v) -> str:
        return "–" if v is None or v != v else f"{v:.3f}"

    print("\n| ranker | split | title only | title + full text | title + lead-40 | reward -abs(r-l) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, splits in rows.items():
        for split, m in splits.items():
            print(f"| {name} | {split} | {fmt(m.get('ndcg5_title'))} | {fmt(m.get('ndcg5_full'))} | "
                  f"{fmt(m.get('ndcg5_lead'))} | {fmt(m.get('reward'))} |")
    if seconds:
        print("\nwall seconds to train (this machine, shared): " + ", ".join(f"{k} {v:.0f}" for k, v in
                                                                            seconds.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "seconds": seconds, "machine": describe()},
                                              indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
