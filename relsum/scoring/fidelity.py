"""The fidelity gate: a fast inference path is used only if it agrees with fp32 on a calibration set.

Agreement means Spearman >= 0.99 against the fp32 scores and mean NDCG@5 on the golden sample equal to
3 decimals (|diff| < 5e-4). The result is cached per (fingerprint, calibration) as ``gate-<calib>.json``
in the path's score-store folder, so the gate runs once per model, path and calibration set.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from relsum.core.errors import RelsumError
from relsum.metrics.ranking import mean_ndcg_at_k
from relsum.scoring.calibration import calibration_set
from relsum.scoring.runners import Runner

logger = logging.getLogger(__name__)

MIN_SPEARMAN = 0.99
NDCG_TOL = 5e-4  # "equal to 3 decimals"
GATE_VERSION = 2


class FidelityGateError(RelsumError, RuntimeError):
    """A fast path disagrees with fp32 beyond the gate; the message gives the measured numbers."""


@dataclasses.dataclass
class FidelityResult:
    path: str
    passed: bool
    spearman: float
    ndcg_ref: float
    ndcg_path: float
    n_pairs: int
    reason: str = ""

    def message(self) -> str:
        return (f"path {self.path!r} {'passed' if self.passed else 'REFUSED by'} the fidelity gate on "
                f"{self.n_pairs} pairs: Spearman vs fp32 {self.spearman:.4f} (need >= {MIN_SPEARMAN}), "
                f"NDCG@5 {self.ndcg_path:.4f} vs fp32 {self.ndcg_ref:.4f} (need equal to 3 decimals)"
                + (f"; {self.reason}" if self.reason else ""))


def calibration_key(calib) -> str:
    h = hashlib.sha256(f"gate-v{GATE_VERSION}".encode())
    for row in calib.itertuples(index=False):
        h.update(f"{row.query_id}\x00{row.query}\x00{row.doc}\x00{row.label}\x01".encode())
    return h.hexdigest()[:16]


def compare(path: str, ref: np.ndarray, cand: np.ndarray, calib) -> FidelityResult:
    """Apply the gate to fp32 scores ``ref`` and the path's scores ``cand`` on ``calib``'s rows."""
    from scipy.stats import spearmanr

    qids, gains = calib["query_id"].to_numpy(), calib["label"].to_numpy(dtype=float)
    reason = ""
    if not np.all(np.isfinite(cand)):
        rho, reason = float("nan"), "non-finite scores"
    elif np.ptp(ref) == 0 or np.ptp(cand) == 0:
        rho, reason = float("nan"), "constant scores: Spearman undefined"
    else:
        rho = float(spearmanr(ref, cand).statistic)
    n_ref = mean_ndcg_at_k(qids, gains, ref, k=5).mean
    n_cand = mean_ndcg_at_k(qids, gains, np.nan_to_num(cand), k=5).mean
    passed = bool(not reason and rho >= MIN_SPEARMAN and abs(n_ref - n_cand) < NDCG_TOL)
    return FidelityResult(path, passed, rho, float(n_ref), float(n_cand), int(len(calib)), reason)


def load_gate(file: Path) -> FidelityResult | None:
    try:
        data = json.loads(file.read_text())
        return FidelityResult(**data) if data.pop("version", None) == GATE_VERSION else None
    except (OSError, ValueError, TypeError):
        return None


def save_gate(result: FidelityResult, file: Path) -> None:
    from relsum.data.io import write_json_atomic

    write_json_atomic({"version": GATE_VERSION, **dataclasses.asdict(result)}, file)


def ensure_gate(scorer, runner: Runner, path: str | None = None) -> FidelityResult:
    """Pass ``runner`` through the gate (cached per fingerprint + calibration set) or raise FidelityGateError.

    The reference is the scorer's fp32 torch path; both score the same calibration pairs with the
    scorer's own tokenization and batching, so only the arithmetic differs.
    """
    config = scorer.config
    path = path or scorer.path
    calib = calibration_set(config.gate_golden, config.gate_max_pairs)
    gate_file = scorer.store_root / scorer.path_fingerprint(path) / f"gate-{calibration_key(calib)}.json"
    result = load_gate(gate_file)
    if result is None:
        pairs = list(zip(calib["query"], calib["doc"], strict=True))
        ref = _reference_scores(scorer, calib, pairs)
        cand = scorer.compute(pairs, desc=f"fidelity gate ({path})", runner=runner)
        result = compare(path, ref, cand, calib)
        save_gate(result, gate_file)
    if not result.passed:
        raise FidelityGateError(result.message())
    logger.info("%s", result.message())
    return result


def _reference_scores(scorer, calib, pairs: list[tuple[str, str]]) -> np.ndarray:
    """fp32 scores of the calibration pairs, kept in the fp32 fingerprint's store (computed once per
    model)."""
    from relsum.scoring.store import ScoreStore, read_meta, text_hash, write_meta

    store = ScoreStore(scorer.fp32_fingerprint, scorer.store_root)
    queries, hashes = calib["query"].tolist(), [text_hash(d) for d in calib["doc"]]
    ref, found = store.lookup(queries, hashes)
    if not found.all():
        missing = np.flatnonzero(~found)
        ref[missing] = scorer.compute([pairs[i] for i in missing], desc="fidelity gate (fp32)",
                                       runner=scorer.fp32_runner)
        store.append([queries[i] for i in missing], [hashes[i] for i in missing], ref[missing])
        if read_meta(store.folder) is None:
            write_meta(store.folder, {"path": "fp32", "reason": "fp32 reference of the fidelity gate",
                                      "model_dir": str(scorer.model_dir)})
    return ref
