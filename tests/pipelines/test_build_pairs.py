import json
from pathlib import Path

import pandas as pd

from relsum.pipelines.build_pairs import PairsResult, run
from relsum.pipelines.configs import BuildPairsConfig
from relsum.scoring.config import ScorerConfig
from relsum.scoring.protocol import RelevanceScorer
from relsum.scoring.scorer import Scorer


def test_build_pairs_returns_typed_result_matching_its_files(tmp_path, sample_dir, tiny_cross_encoder_dir):
    log = pd.read_csv(sample_dir / "search_log.csv", dtype=str, keep_default_na=False).head(60)
    log.to_csv(tmp_path / "log.csv", index=False)
    scorer = Scorer(tiny_cross_encoder_dir, ScorerConfig())
    assert isinstance(scorer, RelevanceScorer)
    config = BuildPairsConfig(search_log=str(tmp_path / "log.csv"), out_dir=str(tmp_path / "out"))
    config.filter.mode, config.filter.top_fraction = "top_fraction", 0.5
    result = run(config, scorer=scorer)
    assert isinstance(result, PairsResult)
    kept, dropped = pd.read_parquet(result.paths.pairs), pd.read_parquet(result.paths.dropped)
    on_disk = json.loads(Path(result.paths.stats).read_text())
    assert on_disk == json.loads(json.dumps(result.stats))
    assert result.stats["kept"] == len(kept) > 0 and result.stats["dropped"] == len(dropped) > 0
    assert result.stats["log_rows_in"] == 60 and result.stats["scorer_fingerprint"] == scorer.fingerprint
    assert result.to_dict()["paths"]["histogram"].endswith("gap_histogram.png")


def test_retrain_dag_steps_build_the_same_pairs_as_the_stage(tmp_path, sample_dir, tiny_cross_encoder_dir):
    from relsum.pipelines import retrain

    log = pd.read_csv(sample_dir / "search_log.csv", dtype=str, keep_default_na=False).head(40)
    log.to_csv(tmp_path / "log.csv", index=False)
    config = retrain.load(None, [f"runs_dir={tmp_path / 'runs'}", f"reward_model={tiny_cross_encoder_dir}",
                                 f"pairs.search_log={tmp_path / 'log.csv'}",
                                 "pairs.filter.mode=top_fraction"])
    extracted = retrain.extract(config, "k", None, None)
    step = retrain.score_filter(config, "k", extracted)
    stage = run(BuildPairsConfig(search_log=str(tmp_path / "log.csv"), out_dir=str(tmp_path / "stage"),
                                 filter=config.pairs.filter),
                scorer=Scorer(tiny_cross_encoder_dir, ScorerConfig()))
    pd.testing.assert_frame_equal(pd.read_parquet(step["pairs"]), pd.read_parquet(stage.paths.pairs))
    assert step["kept"] == stage.stats["kept"]
    assert retrain.score_filter(config, "k", extracted) == step  # committed: a retry returns the same outputs
