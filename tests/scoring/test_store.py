"""The persistent score store: hits/misses, fingerprint key spaces, crash safety, writer lock, prune/stats."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from relsum.scoring.config import ScorerConfig
from relsum.scoring.scorer import Scorer, join_title_text
from relsum.scoring.store import ScoreStore, compact, exclusive_lock, text_hash

QUERIES = ["usb cable", "laptop", "tv", "4k monitor"]
TITLES = ["Belkin USB-C cable 2m", "Dell XPS 13 laptop", "Samsung 55 inch QLED TV", "LG 27UL850 monitor"]
TEXTS = ["braided, 60 W", None, "smart tv | hdmi: 4", "usb-c " * 30]


def _rows(n, prefix="q"):
    queries = [f"{prefix}{i}" for i in range(n)]
    return queries, [text_hash(f"doc {i}") for i in range(n)], np.arange(n, dtype=np.float32) / n


def test_store_lookup_hits_misses_and_reload(tmp_path):
    store = ScoreStore("fp-a", tmp_path)
    q, h, s = _rows(5)
    scores, found = store.lookup(q, h)
    assert not found.any() and np.isnan(scores).all()
    store.append(q[:3], h[:3], s[:3])
    scores, found = store.lookup(q, h)
    assert found.tolist() == [True, True, True, False, False]
    np.testing.assert_array_equal(scores[:3], s[:3])
    fresh = ScoreStore("fp-a", tmp_path)  # another process would see the same committed part
    assert len(fresh) == 3 and fresh.lookup(q[:1], h[:1])[1].all()
    assert store.append([], [], np.empty(0)) is None


def test_scorer_serves_repeats_from_store_and_fingerprint_changes_key_space(tmp_path, tiny_cross_encoder_dir):
    cfg = ScorerConfig(max_length=64, store=True, store_dir=str(tmp_path))
    first = Scorer(tiny_cross_encoder_dir, cfg)
    a = first.score(QUERIES, TITLES, TEXTS)
    assert first.store.misses == 4 and len(list((tmp_path / first.fingerprint).glob("part-*.parquet"))) == 1
    second = Scorer(tiny_cross_encoder_dir, cfg)  # a new process: empty memory cache, warm store
    b = second.score(QUERIES, TITLES, TEXTS)
    np.testing.assert_array_equal(a, b)
    assert second.store.hits == 4 and second.store.misses == 0
    assert len(list((tmp_path / first.fingerprint).glob("part-*.parquet"))) == 1  # nothing recomputed
    # Same store entries, but a different scorer config -> different fingerprint -> nothing served.
    other = Scorer(tiny_cross_encoder_dir, ScorerConfig(max_length=32, store=True, store_dir=str(tmp_path)))
    assert other.fingerprint != first.fingerprint
    other.score(QUERIES, TITLES, TEXTS)
    assert other.store.hits == 0 and other.store.misses == 4


def test_store_serves_its_own_rows_not_recomputed(tmp_path, tiny_cross_encoder_dir):
    """Planted scores are returned as stored: proof that the store, not the model, answered."""
    cfg = ScorerConfig(max_length=64, store=True, store_dir=str(tmp_path))
    scorer = Scorer(tiny_cross_encoder_dir, cfg)
    doc = join_title_text(TITLES[0], TEXTS[0])
    ScoreStore(scorer.fingerprint, tmp_path).append([QUERIES[0]], [text_hash(doc)],
                                                    np.array([0.123], np.float32))
    assert scorer.score(QUERIES[:1], TITLES[:1], TEXTS[:1])[0] == pytest.approx(0.123)


_WRITER = textwrap.dedent("""
    import sys, numpy as np
    import relsum.scoring.store as st
    from relsum.scoring.store import ScoreStore, text_hash
    real = st.write_part
    def slow_write(folder, q, h, s):
        import pyarrow as pa, pyarrow.parquet as pq, os
        tmp = folder / ".tmp-part-crash.parquet"
        with open(tmp, "wb") as fh:
            fh.write(b"PAR1 half written")
            fh.flush()
            print("WRITING", flush=True)
            import time; time.sleep(60)
    st.write_part = slow_write
    store = ScoreStore("fp", sys.argv[1])
    store.append(["x"], [text_hash("d")], np.array([0.5], np.float32))
""")


def test_crash_mid_append_loses_nothing_committed(tmp_path):
    store = ScoreStore("fp", tmp_path)
    q, h, s = _rows(10)
    store.append(q, h, s)
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "WRITING"
    reader = ScoreStore("fp", tmp_path)  # a reader while the writer is mid-append: committed rows only
    assert len(reader) == 10
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (tmp_path / "fp" / ".tmp-part-crash.parquet").exists()
    after = ScoreStore("fp", tmp_path)
    scores, found = after.lookup(q, h)
    assert found.all() and np.array_equal(scores, s) and len(after) == 10
    after.append(["new"], [text_hash("new doc")], np.array([0.9], np.float32))  # next writer cleans up
    assert not (tmp_path / "fp" / ".tmp-part-crash.parquet").exists()
    assert len(ScoreStore("fp", tmp_path)) == 11


def test_two_writers_serialise_on_the_lock(tmp_path):
    folder = tmp_path / "fp"
    order = []
    with exclusive_lock(folder):
        with pytest.raises(TimeoutError), exclusive_lock(folder, timeout_s=0.2):
            pass
        store = ScoreStore("fp", tmp_path)
        q, h, s = _rows(3)
        thread = threading.Thread(target=lambda: (store.append(q, h, s), order.append("append")))
        thread.start()
        time.sleep(0.3)
        assert order == [] and not list(folder.glob("part-*.parquet"))  # blocked while we hold the lock
        order.append("released")
    thread.join(5)
    assert order == ["released", "append"] and len(ScoreStore("fp", tmp_path)) == 3


def test_compact_stats_and_prune(tmp_path):
    from relsum.pipelines.configs import PruneConfig, StatsConfig
    from relsum.pipelines.scores import prune, stats

    for i in range(3):
        ScoreStore("keep", tmp_path).append(*_rows(4, prefix=f"k{i}-"))
    ScoreStore("old", tmp_path).append(*_rows(2))
    table = {row["fingerprint"]: row for row in stats(StatsConfig(store_dir=str(tmp_path)))}
    assert table["keep"]["rows"] == 12 and table["keep"]["parts"] == 3 and table["old"]["rows"] == 2
    assert table["keep"]["bytes"] > 0 and table["keep"]["last_write"] is not None
    assert compact(tmp_path / "keep") == {"parts_before": 3, "parts_after": 1, "rows": 12}
    assert len(ScoreStore("keep", tmp_path)) == 12
    with pytest.raises(ValueError, match="nothing to prune"):
        PruneConfig(store_dir=str(tmp_path), compact=False)
    result = prune(PruneConfig(store_dir=str(tmp_path), keep=["keep"]))
    assert result["removed"] == ["old"] and not (tmp_path / "old").exists()
    assert len(ScoreStore("keep", tmp_path)) == 12
    result = prune(PruneConfig(store_dir=str(tmp_path), older_than_days=0.0))  # everything is older than now
    assert result["removed"] == ["keep"] and stats(StatsConfig(store_dir=str(tmp_path))) == []
