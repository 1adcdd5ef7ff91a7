"""Compare reward-model recipes on ONE fixed split of the TRAIN queries (never the golden split).

Why one split and not k-fold CV: each candidate is a full bootstrap (~5 min on 2 cores), so a 3-fold CV of
every candidate does not fit a working session; ``--fold 1`` and ``--fold 2`` complete the CV of the ones
that matter. The split is the first fold (``--fold 0``) of the seeded 3-fold
``reward_cv.query_folds`` over the train queries: 1/3 of them are validation, the other 2/3 (with their
search-log rows) train the candidate. The validation queries' judged pairs are scored exactly as the
held-out report scores the golden split (``reward_cv.score_views``: NDCG@5 on title / title + text /
title + lead-40, the reward on title + text, at the report's token budget).

    python benchmarks/select_reward_recipe.py --candidates v1 v2 --out /tmp/rm_select.jsonl

Each candidate appends one JSON line (its overrides, figures, selection score and seconds).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

#: name -> RewardModelConfig overrides. ``v1`` is the distill-v1 recipe spelled out.
V1 = dict(view_targets=False, judged_title_weight=1.0, text_view="full", calibration_holdout=0.0)
CANDIDATES: dict[str, dict] = {
    "v1": V1,
    "view_targets": {**V1, "view_targets": True},
    "view_targets+holdout_cal": {**V1, "view_targets": True, "calibration_holdout": 0.2},
    "view_targets+holdout_cal+lead_doc": {**V1, "view_targets": True, "calibration_holdout": 0.2,
                                          "text_view": "lead"},
    "view_targets+holdout_cal+lead_doc+blend0.5": {**V1, "view_targets": True, "calibration_holdout": 0.2,
                                                   "text_view": "lead", "judged_title_weight": 0.5},
    "view_targets+holdout_cal+blend0.5": {**V1, "view_targets": True, "calibration_holdout": 0.2,
                                          "judged_title_weight": 0.5},
    "view_targets+holdout_cal+blend0": {**V1, "view_targets": True, "calibration_holdout": 0.2,
                                        "judged_title_weight": 0.0},
    "view_targets+holdout_cal+blend0.5+epochs3": {**V1, "view_targets": True, "calibration_holdout": 0.2,
                                                  "judged_title_weight": 0.5, "epochs": 3},
    "view_targets+holdout_cal+blend0.5+tokens128": {**V1, "view_targets": True, "calibration_holdout": 0.2,
                                                    "judged_title_weight": 0.5, "max_length": 128},
    "view_targets+blend0.5": {**V1, "view_targets": True, "judged_title_weight": 0.5},
    "view_targets+blend0": {**V1, "view_targets": True, "judged_title_weight": 0.0},
    "view_targets+blend0.5+epochs3": {**V1, "view_targets": True, "judged_title_weight": 0.5, "epochs": 3},
    "view_targets+holdout_cal0.1+blend0.5": {**V1, "view_targets": True, "calibration_holdout": 0.1,
                                             "judged_title_weight": 0.5},
    "view_targets+holdout_cal0.1+lead_doc+blend0.5": {**V1, "view_targets": True, "calibration_holdout": 0.1,
                                                      "text_view": "lead", "judged_title_weight": 0.5},
    "view_targets+holdout_cal0.1+blend0": {**V1, "view_targets": True, "calibration_holdout": 0.1,
                                           "judged_title_weight": 0.0},
    "view_targets+holdout_cal+epochs3": {**V1, "view_targets": True, "calibration_holdout": 0.2, "epochs": 3},
    "view_targets+holdout_cal+tokens128": {**V1, "view_targets": True, "calibration_holdout": 0.2,
                                           "max_length": 128},
    # distill-v3 (the default) and a judged-only finish after the distillation epochs (issue 21's first try)
    "v3": {},
    "v3+finish1": {"judged_finish_epochs": 1},
    "v3+epochs1+finish2": {"epochs": 1, "judged_finish_epochs": 2},
    # text must move a judged pair's score toward its label (title + text vs title only)
    "v3+consistency1": {"view_consistency": 1.0},
    "v3+consistency0.3": {"view_consistency": 0.3},
    # more teacher pairs per query (issue 21's first try used ~6x this recipe's count), same or fewer epochs
    "v3+wide": {"hard_negatives": 40, "random_negatives": 40},
    "v3+wide+epochs1": {"hard_negatives": 40, "random_negatives": 40, "epochs": 1},
}


def teacher_figures(teacher, pairs, lead_n: int) -> dict:
    """NDCG@5 of the teacher's own cosine on the validation pairs (title-only and title + lead views)."""
    from relsum.metrics.ranking import mean_ndcg_at_k

    qids, labels = pairs["query_id"].to_numpy(), pairs["label"].to_numpy(float)
    out = {}
    for view in ("title", "lead"):
        cos = teacher.cosine(pairs["query"].tolist(), pairs["product_id"].tolist(), view=view)
        out[f"teacher_ndcg5_{view}"] = mean_ndcg_at_k(qids, labels, cos, k=5).mean
    return out


def save_logits(path, logits: dict, val_pairs, model, tokenizer, config, cal_pairs, info) -> None:
    """Validation logits per view and the calibration pairs' logits (title + text, title + lead), both
    as the saved model emits them, with the calibration (a, b) that was folded in."""
    import numpy as np

    from relsum.scoring.reward_train import calibration_docs, predict_logits

    extra = {}
    if len(cal_pairs):
        queries, docs, labels = calibration_docs(cal_pairs, config.teacher_lead_words)
        extra = {"cal_logits": predict_logits(model, tokenizer, queries, docs, config.eval_max_length),
                 "cal_labels": labels}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{f"val_{k}": v for k, v in logits.items()}, **extra,
             val_labels=val_pairs["label"].to_numpy(float), val_qids=val_pairs["query_id"].to_numpy(str),
             calibration=np.array(info.get("calibration", [1, 0])))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", nargs="+", required=True, help=f"names from {sorted(CANDIDATES)}")
    parser.add_argument("--out", required=True, help="JSON lines file the figures are appended to")
    parser.add_argument("--logits-dir", default="", help="save each candidate's logits here (.npz)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--fold", type=int, default=0, choices=(0, 1, 2),
                        help="which of the 3 seeded query folds validates (0 = the split of every figure "
                             "in docs/reward_model.md; run 1 and 2 too for a 3-fold CV)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from relsum.core.machine import describe
    from relsum.core.paths import SAMPLE_DIR
    from relsum.pipelines.reward_model import judged_pairs, train_log_pairs
    from relsum.scoring.config import RewardModelConfig
    from relsum.scoring.distill import Teacher
    from relsum.scoring.reward_cv import query_folds, score_views, selection_score
    from relsum.scoring.reward_model import check_pairs, train_model

    golden, _ = judged_pairs(str(SAMPLE_DIR / "golden"))  # only its query ids/texts, to keep them out
    train_golden, train = judged_pairs(str(SAMPLE_DIR / "train"))
    train = check_pairs(train, "train")
    catalog = train_golden.catalog[["product_id", "title", "text"]]
    logged = train_log_pairs(str(SAMPLE_DIR / "search_log.csv"), golden.queries)
    held = query_folds(train["query_id"], 3, seed=0)[args.fold]
    fit_pairs, val_pairs = train[~train["query_id"].isin(held)], train[train["query_id"].isin(held)]
    fit_log = logged[~logged["query_id"].isin(held)]
    teachers: dict = {}
    for name in args.candidates:
        config = RewardModelConfig(**CANDIDATES[name])
        key = config.teacher_lead_words
        if key not in teachers:
            teachers[key] = Teacher(config.resolved_teacher(), catalog, key)
        start, cpu = time.monotonic(), time.process_time()
        model, tokenizer, info = train_model(fit_pairs, config, catalog, fit_log, teachers[key])
        assert not set(info["train_query_ids"]) & held, "a validation query reached training"
        logits: dict = {}
        figures = score_views(model, tokenizer, val_pairs, config.eval_max_length, logits_out=logits)
        if args.logits_dir:  # calibrated logits of the validation and calibration pairs, for offline study
            save_logits(Path(args.logits_dir) / f"{name}.npz", logits, val_pairs, model, tokenizer, config,
                        fit_pairs[fit_pairs["query_id"].isin(info["calibration_query_ids"])], info)
        figures.update(teacher_figures(teachers[key], val_pairs, key))
        record = {"candidate": name, "fold": args.fold, "overrides": CANDIDATES[name], "figures": figures,
                  "selection_score": selection_score(figures), "n_val_queries": len(held),
                  "n_val_pairs": len(val_pairs), "wall_s": round(time.monotonic() - start, 1),
                  "cpu_s": round(time.process_time() - cpu, 1),
                  "info": {k: v for k, v in info.items() if k != "train_query_ids"},
                  "config": dataclasses.asdict(config), "machine": describe()}
        logging.info("candidate %s: %s", name, json.dumps(figures))
        with open(args.out, "a") as fh:
            fh.write(json.dumps(record, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
