"""Daily catalog summaries with the current champion: new and changed products, one partition per interval.

Validates the catalog strictly (``validate`` task), resolves the MLflow alias ``champion`` -> version ->
adapter + policy dir (version tags), then runs
``relsum.pipelines.summarize`` incrementally into
``<RELSUM_HOME>/runs/relsum_catalog_summaries/partition=<interval start>/`` (unchanged products are
carried over from the previous partition; a rerun of the same interval is a no-op). Config as in
``relsum_retrain`` (param ``config`` / Variable ``relsum_config`` + ``overrides``).
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

DEFAULT_ARGS = {"owner": "relsum", "retries": 2, "retry_delay": dt.timedelta(minutes=5),
                "execution_timeout": dt.timedelta(hours=6)}
PARAMS = {"config": Param("", type="string", description="YAML path of DagConfig ('' = Variable "
                                                         "relsum_config or the default)"),
          "overrides": Param([], type="array", description="key=value overrides")}


@dag(dag_id="relsum_catalog_summaries", schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
     start_date=dt.datetime(2026, 10, 5, tzinfo=dt.UTC), catchup=False, max_active_runs=1,
     default_args=DEFAULT_ARGS, params=PARAMS, tags=["relsum"], doc_md=__doc__)
def relsum_catalog_summaries():
    @task
    def validate(**context) -> dict:  # strict: an empty catalog or too many rejects stops the run here
        from relsum.pipelines import retrain

        config, key, _, _ = retrain.task_setup(context)
        return retrain.validate_inputs(config, retrain.CATALOG, key)

    @task
    def resolve_champion(**context) -> dict:
        from relsum.pipelines import retrain

        config, key, _, _ = retrain.task_setup(context)
        return retrain.resolve_champion(config, retrain.CATALOG, key)

    @task
    def summarize_catalog(champion: dict, **context) -> dict:
        from relsum.pipelines import retrain

        config, key, _, _ = retrain.task_setup(context)
        return retrain.summarize_catalog(config, key, champion)

    validate() >> summarize_catalog(resolve_champion())


relsum_catalog_summaries()
