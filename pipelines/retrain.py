"""Steps of the Airflow DAGs (``dags/``): each is one task, keyed by a data-interval partition.

Every step writes under ``<runs_dir>/<dag_id>/<interval key>/<step>/`` (default runs_dir:
``<RELSUM_HOME>/runs``), atomically, and ends by writing ``_SUCCESS.json`` with a fingerprint of its
inputs and its outputs. A retry or rerun with the same inputs returns the committed outputs unchanged,
so a rerun for the same interval leaves the same files. Training additionally looks its model version up
in MLflow by the tags ``relsum.interval`` + ``relsum.fingerprint`` (and the step's ``train_result.json``)
before training, so one interval never registers two versions. Steps take and return only paths, URIs,
version strings and small dicts (what goes through XCom).

retrain: extract -> score_filter -> train -> evaluate -> register -> gate
catalog summaries: resolve_champion -> summarize_catalog
interleaving export: resolve_champion -> summarize_candidates -> export
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from relsum.config import cfg, load_config, to_dict
from relsum.paths import SAMPLE_DIR, home
from relsum.pipelines.build_pairs import BuildPairsConfig
from relsum.pipelines.train import TrainStageConfig
from relsum.registry import TAG_FINGERPRINT, TAG_INTERVAL, GateConfig
from relsum.summarize.job import SummarizeConfig

logger = logging.getLogger(__name__)

RETRAIN, CATALOG, EXPORT = "relsum_retrain", "relsum_catalog_summaries", "relsum_interleaving_export"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclasses.dataclass
class EvalSection:
    golden: str = cfg(str(SAMPLE_DIR / "golden"), help="Golden-layout folder (full and tail).")
    max_queries: int = cfg(0, help="Use at most this many golden queries, half tail (0 = all; small for smoke runs).")
    k: int = cfg(5, help="NDCG cut-off.")
    min_precision: float = cfg(0.9, help="Precision floor of R@P.")
    n_boot: int = cfg(1000, help="Bootstrap resamples for the CIs.")


@dataclasses.dataclass
class ExportSection:
    candidates: str = cfg("", help="Candidates table (query_id, query, product_id); '' = the golden set's judged pairs.")
    catalog: str = cfg("", help="Catalog of the candidate products; '' = the golden folder's catalog.")
    max_queries: int = cfg(0, help="Export at most this many queries (0 = all).")
    seed: int = cfg(0, help="Team-draft seed.")
    length: int = cfg(10, help="Interleaved list length.")
    experiment_id: str = cfg("relsum-interleaving", help="Experiment id in the exported rows.")


def _summarize_default() -> SummarizeConfig:
    return SummarizeConfig(catalog=str(SAMPLE_DIR / "products.jsonl"), out_dir="")


@dataclasses.dataclass
class DagConfig:
    runs_dir: str = cfg("", help="Root of the DAG outputs (default: <RELSUM_HOME>/runs).")
    reward_model: str = cfg("", help="Frozen cross-encoder folder (default: bootstrap MiniLM into RELSUM_HOME).")
    pairs: BuildPairsConfig = cfg(default_factory=BuildPairsConfig, help="Pair extraction and filter (dates come from the interval).")
    train: TrainStageConfig = cfg(default_factory=TrainStageConfig, help="Training and MLflow tracking (train.tracking).")
    evaluate: EvalSection = cfg(default_factory=EvalSection, help="Golden-set evaluation.")
    gate: GateConfig = cfg(default_factory=GateConfig, help="Champion/challenger gate.")
    summarize: SummarizeConfig = cfg(default_factory=_summarize_default, help="Catalog summaries (model from the champion).")
    export: ExportSection = cfg(default_factory=ExportSection, help="Interleaving export.")

    def step_dir(self, dag_id: str, key: str, step: str) -> Path:
        return Path(self.runs_dir or home() / "runs") / dag_id / key / step


def load(config_path: str | None = None, overrides: list[str] | None = None) -> DagConfig:
    return load_config(DagConfig, config_path or None, list(overrides or []))


def interval_key(start: Any = None, run_id: str | None = None) -> str:
    """``YYYY-MM-DD`` of the interval start (full timestamp when not midnight); else the run id."""
    if start is not None:
        text = start.isoformat()
        return text[:10] if text[11:19] in ("", "00:00:00") else _UNSAFE.sub("-", text[:19])
    if not run_id:
        raise ValueError("an interval key needs a data-interval start or a run id")
    return _UNSAFE.sub("_", run_id).strip("._")


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _file_sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _once(out: Path, fingerprint: str, body: Callable[[], dict]) -> dict:
    """Return the committed outputs of ``out`` for ``fingerprint``, else run ``body`` and commit them."""
    from relsum.data.io import write_json_atomic

    marker = out / "_SUCCESS.json"
    if marker.is_file():
        done = json.loads(marker.read_text())
        if done["fingerprint"] == fingerprint:
            logger.info("%s: already done for these inputs, reusing", out)
            return done["outputs"]
        logger.info("%s: inputs changed (%s -> %s), recomputing", out, done["fingerprint"], fingerprint)
        marker.unlink()
    out.mkdir(parents=True, exist_ok=True)
    outputs = body()
    write_json_atomic({"fingerprint": fingerprint, "outputs": outputs}, marker)
    return outputs


def _reward_model(config: DagConfig) -> str:
    from relsum.pipelines.reward_model import ensure_reward_model

    return ensure_reward_model(config.reward_model)


def _scorer(config: DagConfig):
    from relsum.scoring.scorer import Scorer, ScorerConfig

    return Scorer(_reward_model(config), ScorerConfig(store=True))


# ---- relsum_retrain -------------------------------------------------------------------------------

def extract(config: DagConfig, key: str, start: str | None, end: str | None) -> dict:
    """Validated inputs -> the interval's deduplicated pairs joined to the catalog (``pairs_raw.parquet``)."""
    from relsum.data.io import write_csv_atomic, write_json_atomic, write_parquet_atomic
    from relsum.pipelines.build_pairs import extract_pairs, load_inputs

    pc = dataclasses.replace(config.pairs, start_date=start, end_date=end)
    out = config.step_dir(RETRAIN, key, "extract")

    def body() -> dict:
        catalog, log, rejects = load_inputs(pc)
        (out / "rejects").mkdir(exist_ok=True)
        for table, frame in rejects.items():
            write_csv_atomic(frame, out / "rejects" / f"{table}.csv")
        pairs, unmatched = extract_pairs(catalog, log, pc)
        if pairs.empty:
            raise ValueError(f"no search-log pairs in [{start}, {end}): nothing to train on")
        write_parquet_atomic(pairs, out / "pairs_raw.parquet")
        write_json_atomic({"log_rows_in": int(len(log) + len(rejects["search_log"])),
                           "log_rows_rejected": int(len(rejects["search_log"])),
                           "catalog_rows_rejected": int(len(rejects["catalog"])),
                           "pairs_without_catalog_product": int(len(unmatched)), "pairs": int(len(pairs)),
                           "date_range": [start, end]}, out / "extract_stats.json")
        return {"pairs_raw": str(out / "pairs_raw.parquet"), "stats": str(out / "extract_stats.json")}

    return _once(out, _fingerprint(to_dict(pc), _file_sha(pc.search_log) if Path(pc.search_log).is_file() else
                                   pc.search_log), body)


def score_filter(config: DagConfig, key: str, extracted: dict) -> dict:
    """Score r(q,t) and r(q,[t;d]) with the one scorer, label, filter by the gap: ``pairs.parquet``."""
    from relsum.data.io import read_table, write_json_atomic, write_parquet_atomic
    from relsum.pairs import filter_pairs, label_and_gap
    from relsum.pipelines.build_pairs import plot_gap_histogram

    out = config.step_dir(RETRAIN, key, "pairs")

    def body() -> dict:
        pairs = read_table(extracted["pairs_raw"])
        scorer = _scorer(config)
        queries, titles = pairs["query"].tolist(), pairs["title"].tolist()
        r_title = scorer.score(queries, titles)
        r_desc = scorer.score(queries, titles, pairs["text"].tolist())
        kept, dropped, stats = filter_pairs(label_and_gap(pairs, r_title, r_desc), config.pairs.filter)
        stats.update(json.loads(Path(extracted["stats"]).read_text()))
        stats["scorer_fingerprint"] = getattr(scorer, "fingerprint", None)
        paths = {"pairs": out / "pairs.parquet", "dropped": out / "dropped.parquet",
                 "stats": out / "filter_stats.json", "histogram": out / "gap_histogram.png"}
        write_parquet_atomic(kept, paths["pairs"])
        write_parquet_atomic(dropped, paths["dropped"])
        write_json_atomic(stats, paths["stats"])
        plot_gap_histogram(stats, config.pairs.filter, paths["histogram"])
        return {k: str(v) for k, v in paths.items()} | {"kept": int(stats["kept"])}

    return _once(out, _fingerprint(to_dict(config.pairs.filter), _reward_model(config),
                                   _file_sha(extracted["pairs_raw"])), body)


def train(config: DagConfig, key: str, pairs: dict) -> dict:
    """Train and register one version for the interval, or reuse the one already registered for it."""
    from relsum import registry
    from relsum.pipelines import train as train_stage

    ts = config.train
    out = config.step_dir(RETRAIN, key, "train")
    ts.train.train_data, ts.train.out_dir = pairs["pairs"], str(out)
    ts.train.scorer_model_dir = _reward_model(config)
    fp = _fingerprint(to_dict(ts), _file_sha(pairs["pairs"]))
    tags = {TAG_INTERVAL: f"{RETRAIN}/{key}", TAG_FINGERPRINT: fp}

    def body() -> dict:
        tracking, client = ts.tracking, registry.client(ts.tracking)
        found = registry.find_version(tracking, tags)
        result_file = out / "train_result.json"
        if found is None and result_file.is_file():  # trained and registered, died before tagging
            previous = json.loads(result_file.read_text())
            if previous.get("model_version"):
                found = client.get_model_version(tracking.registered_model, previous["model_version"])
        if found is None:
            result = train_stage.run(ts)
            found = client.get_model_version(tracking.registered_model, result["model_version"])
        for tag, value in tags.items():
            client.set_model_version_tag(tracking.registered_model, found.version, tag, value)
        client.set_tag(found.run_id, TAG_INTERVAL, tags[TAG_INTERVAL])
        resolved = registry.resolve(tracking, client.get_model_version(tracking.registered_model, found.version),
                                    out / "downloaded")
        return resolved | {"interval": tags[TAG_INTERVAL]}

    return _once(out, fp, body)


def _golden_subset(config: DagConfig, out: Path) -> str:
    """The golden folder, or a copy with ``max_queries`` queries (half tail) for smoke runs."""
    import pandas as pd

    from relsum.data.golden import find_catalog, load_golden

    ec = config.evaluate
    if not ec.max_queries:
        return ec.golden
    golden = load_golden(ec.golden)
    judged = golden.queries[golden.queries["query_id"].isin(golden.judgments["query_id"])].sort_values("query_id")
    tail = judged[judged["tail"]].head((ec.max_queries + 1) // 2)
    keep = set(pd.concat([tail, judged[~judged["tail"]].head(ec.max_queries - len(tail))])["query_id"])
    sub = out / "golden"
    sub.mkdir(parents=True, exist_ok=True)
    src = Path(ec.golden)
    for name in ("queries.csv", "judgments.csv"):
        frame = pd.read_csv(src / name, dtype=str, keep_default_na=False)
        frame[frame["query_id"].isin(keep)].to_csv(sub / name, index=False)
    for name in ("relsum.yaml",):
        if (src / name).is_file():
            (sub / name).write_text((src / name).read_text())
    products = set(pd.read_csv(sub / "judgments.csv", dtype=str)["product_id"])
    _catalog_subset(str(find_catalog(src)), products, sub / "products.jsonl")
    return str(sub)


def _catalog_subset(source: str, products: set[str], dst: Path) -> str:
    """The catalog rows of ``products``: raw JSONL lines copied as they are (nested attributes stay intact)."""
    from relsum.data.io import atomic_path, read_table, write_parquet_atomic

    if source.endswith(".jsonl"):
        dst = dst.with_suffix(".jsonl")
        with Path(source).open(encoding="utf-8") as fh, atomic_path(dst) as tmp:
            tmp.write_text("".join(line for line in fh if line.strip()
                                   and str(json.loads(line).get("product_id")) in products), encoding="utf-8")
    else:
        dst = dst.with_suffix(".parquet")
        frame = read_table(source)
        write_parquet_atomic(frame[frame["product_id"].astype(str).isin(products)].reset_index(drop=True), dst)
    return str(dst)


def evaluate(config: DagConfig, key: str, trained: dict) -> dict:
    """Summarize the golden products with the new adapter, the champion and the reference; evaluate all."""
    import pandas as pd

    from relsum import registry
    from relsum.data.golden import load_golden
    from relsum.data.io import write_parquet_atomic
    from relsum.pipelines import evaluate as evaluate_stage
    from relsum.policy_eval import summarize_products
    from relsum.training.policy import load_policy

    out = config.step_dir(RETRAIN, key, "evaluate")
    tracking = config.train.tracking

    def body() -> dict:
        champ = registry.champion_version(tracking, config.gate.alias)
        champ_info = None
        if champ is not None and str(champ.version) != trained["version"]:
            champ_info = registry.resolve(tracking, champ, config.step_dir(RETRAIN, key, "champion"))
        golden_dir = _golden_subset(config, out)
        golden = load_golden(golden_dir)
        products = golden.catalog[golden.catalog["product_id"].isin(golden.judgments["product_id"])]
        products = products[["product_id", "title", "text"]]
        models = {"challenger": (trained["policy_dir"], trained["adapter_dir"]), "sum_ref": (trained["policy_dir"], None)}
        if champ_info:
            models["champion"] = (champ_info["policy_dir"], champ_info["adapter_dir"])
        summaries = {}
        for name, (policy, adapter) in models.items():
            model, tokenizer = load_policy(policy, adapter)
            series = summarize_products(model, tokenizer, products, config.train.train.policy)
            path = out / "summaries" / f"{name}.parquet"
            write_parquet_atomic(pd.DataFrame({"product_id": series.index, "summary": series.to_numpy()}), path)
            summaries[name] = str(path)
        ec = config.evaluate
        result = evaluate_stage.run(evaluate_stage.EvaluateConfig(
            golden=golden_dir, reward_model=_reward_model(config), summaries=summaries, out_dir=str(out / "evaluation"),
            k=ec.k, min_precision=ec.min_precision, n_boot=ec.n_boot), scorer=_scorer(config))
        return {"metrics": result["paths"]["metrics"], "report": [v for k, v in result["paths"].items() if k in ("md", "html")],
                "champion_version": champ_info["version"] if champ_info else None}

    # The champion compared against is pinned by the committed outputs (champion_version): after the gate
    # promotes this version, a rerun must not re-evaluate it against itself.
    return _once(out, _fingerprint(trained, to_dict(config.evaluate)), body)


def register(config: DagConfig, key: str, trained: dict, evaluated: dict) -> dict:
    """Attach the evaluation metrics (scheme in :mod:`relsum.registry`) to the version's run; idempotent."""
    from relsum import registry

    metrics = json.loads(Path(evaluated["metrics"]).read_text())
    artifacts = [evaluated["metrics"], *evaluated.get("report", [])]
    flat = registry.log_evaluation(config.train.tracking, trained["run_id"], metrics,
                                   evaluated.get("champion_version"), [p for p in artifacts if Path(p).is_file()])
    return {"version": trained["version"], "run_id": trained["run_id"], "n_metrics": len(flat),
            "tracking_uri": config.train.tracking.resolved_uri()}


def gate(config: DagConfig, key: str, registered: dict) -> dict:
    """Move the champion alias to the new version only if it passes the gate; the decision is saved."""
    from relsum import registry
    from relsum.data.io import write_json_atomic

    out = config.step_dir(RETRAIN, key, "gate")

    def body() -> dict:
        decision = registry.apply_gate(config.train.tracking, registered["version"], config.gate)
        write_json_atomic(decision, out / "gate.json")
        return decision

    return _once(out, _fingerprint(registered["version"], to_dict(config.gate)), body)


# ---- relsum_catalog_summaries and relsum_interleaving_export ----------------------------------------

def resolve_champion(config: DagConfig, dag_id: str, key: str) -> dict:
    """Alias -> version -> adapter folder + policy dir (from the version's tags)."""
    from relsum import registry

    champ = registry.champion_version(config.train.tracking, config.gate.alias)
    if champ is None:
        raise ValueError(f"no '{config.gate.alias}' alias on {config.train.tracking.registered_model}: "
                         "run the relsum_retrain DAG first")
    return registry.resolve(config.train.tracking, champ, config.step_dir(dag_id, key, "champion"))


def _summarize_config(config: DagConfig, champion: dict, **changes: Any) -> SummarizeConfig:
    stamp = f"{config.train.tracking.registered_model}/v{champion['version']}"
    return dataclasses.replace(config.summarize, model_dir=champion["policy_dir"], adapter_dir=champion["adapter_dir"],
                               model_version=stamp, **changes)


def summarize_catalog(config: DagConfig, key: str, champion: dict) -> dict:
    """New and changed products with the champion into ``<runs>/relsum_catalog_summaries/partition=<key>``."""
    from relsum.pipelines import summarize

    root = config.summarize.out_dir or str(Path(config.runs_dir or home() / "runs") / CATALOG)
    manifest = summarize.run(_summarize_config(config, champion, out_dir=root), partition=key)
    return {"partition_dir": str(summarize.partition_dir(root, key)), "run_id": manifest["run_id"],
            "counts": manifest["counts"], "model_version": champion["version"]}


def summarize_candidates(config: DagConfig, key: str, champion: dict) -> dict:
    """Candidates (default: golden judged pairs) and the champion's summaries of their products."""
    from relsum.data.golden import find_catalog, load_golden
    from relsum.data.io import read_table, write_parquet_atomic
    from relsum.pipelines import summarize
    from relsum.summarize.job import load_summaries

    out = config.step_dir(EXPORT, key, "summaries")
    xc = config.export

    def body() -> dict:
        golden = load_golden(config.evaluate.golden)
        if xc.candidates:
            cands = read_table(xc.candidates)
        else:
            cands = golden.judgments[["query_id", "product_id"]].merge(golden.queries[["query_id", "query"]])
        if xc.max_queries:
            cands = cands[cands["query_id"].isin(sorted(cands["query_id"].unique())[:xc.max_queries])]
        write_parquet_atomic(cands[["query_id", "query", "product_id"]].reset_index(drop=True), out / "candidates.parquet")
        source = xc.catalog or str(find_catalog(Path(config.evaluate.golden)))
        catalog = _catalog_subset(source, set(cands["product_id"].astype(str)), out / "catalog")
        sc = _summarize_config(config, champion, catalog=catalog, out_dir=str(out / "job"), incremental=False)
        summarize.run(sc)
        frame = load_summaries(sc.out_dir)[["product_id", "summary"]]
        write_parquet_atomic(frame, out / "summaries.parquet")
        return {"candidates": str(out / "candidates.parquet"), "catalog": catalog,
                "summaries": str(out / "summaries.parquet"), "model_version": champion["version"]}

    return _once(out, _fingerprint(champion, to_dict(xc), config.evaluate.golden), body)


def export(config: DagConfig, key: str, prepared: dict) -> dict:
    """Team-draft lists, champion summaries (variation) against title-only ranking (control)."""
    from relsum.pipelines.interleaving import ExportConfig, run_export

    out = config.step_dir(EXPORT, key, "export")
    xc = config.export
    ec = ExportConfig(candidates=prepared["candidates"], catalog=prepared["catalog"], summaries=prepared["summaries"],
                      reward_model=_reward_model(config), out_dir=str(out), seed=xc.seed, length=xc.length,
                      experiment_id=f"{xc.experiment_id}-v{prepared['model_version']}")
    fp = _fingerprint(to_dict(ec), _file_sha(prepared["candidates"]), _file_sha(prepared["summaries"]))
    return _once(out, fp, lambda: run_export(ec, scorer=_scorer(config))["paths"])
