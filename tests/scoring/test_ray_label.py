"""Ray labelling on a local Ray (2 CPUs): every pair comes out exactly once, and a rerun resumes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from relsum.scoring.config import RayLabelConfig, ScorerConfig
from relsum.scoring.ray_label import run
from relsum.scoring.scorer import Scorer


def _part(i: int, n: int) -> pd.DataFrame:
    rows = [{"query": f"query {i}-{j % 7}", "title": f"Product {i}-{j}", "text": None if j % 5 == 0
             else f"spec {j} " * (j % 9),
             "label": 1.0 if j % 4 == 0 else None, "query_id": f"q{i}-{j % 7}", "product_id": f"p{i}-{j}"}
            for j in range(n)]
    return pd.DataFrame(rows, columns=["query", "title", "text", "label", "query_id", "product_id"])


@pytest.mark.slow
def test_ray_labels_every_pair_once_and_resumes(tmp_path, tiny_cross_encoder_dir):
    src = tmp_path / "in"
    src.mkdir()
    sizes = {"part-000.parquet": 37, "part-001.parquet": 20, "part-002.parquet": 0, "part-003.parquet": 11}
    for k, (name, n) in enumerate(sizes.items()):
        _part(k, n).to_parquet(src / name, index=False)
    out = tmp_path / "out"
    config = RayLabelConfig(input=str(src), out_dir=str(out), reward_model=str(tiny_cross_encoder_dir),
                            scorer=ScorerConfig(max_length=64), local_num_cpus=2, num_actors=2,
                            cpus_per_actor=0.5, batch_size=8)
    first = run(config)
    assert first["labelled_now"] == 4 and first["rows_labelled_now"] == 68
    local = Scorer(tiny_cross_encoder_dir, ScorerConfig(max_length=64))
    for name, n in sizes.items():
        got = pd.read_parquet(out / name)
        want = pd.read_parquet(src / name)
        assert len(got) == n and sorted(got["product_id"]) == sorted(want["product_id"])  # exactly once
        assert {"r_title", "r_desc", "gap", "label", "label_source"} <= set(got.columns)
        if n:
            got = got.set_index("product_id").loc[want["product_id"]]
            np.testing.assert_allclose(got["r_desc"], local.score(want["query"], want["title"], want["text"]),
                                       atol=1e-6)
            assert (got["label_source"] == np.where(want["label"].notna(), "human", "proxy")).all()
    stamps = {name: (out / name).stat().st_mtime_ns for name in sizes}
    (out / "part-001.parquet").unlink()  # as if the run had died before writing this part
    second = run(config)
    assert second["labelled_now"] == 1 and second["skipped"] == 3 and second["rows_labelled_now"] == 20
    assert len(pd.read_parquet(out / "part-001.parquet")) == 20
    assert all((out / n).stat().st_mtime_ns == stamps[n] for n in sizes if n != "part-001.parquet")


def test_bad_inputs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="stall"):
        RayLabelConfig(local_num_cpus=2, num_actors=2, cpus_per_actor=1.0)
    with pytest.raises(FileNotFoundError, match="no Parquet input"):
        run(RayLabelConfig(input=str(tmp_path), reward_model="x"))
    pd.DataFrame({"query": ["q"], "title": ["t"]}).to_parquet(tmp_path / "a.parquet")
    with pytest.raises(ValueError, match="missing columns"):
        run(RayLabelConfig(input=str(tmp_path), reward_model="x", out_dir=str(tmp_path / "o")))
