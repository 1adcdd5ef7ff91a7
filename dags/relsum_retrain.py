"""Weekly retraining: validate -> extract -> score/filter -> train -> evaluate -> register -> champion gate.

Thin on purpose: only airflow.sdk and the stdlib at import time; every task calls one step of
``relsum.pipelines.retrain`` and passes paths, URIs and version strings through XCom. Outputs are keyed
by the data interval (``<RELSUM_HOME>/runs/relsum_retrain/<interval start>/``), so a retry or a rerun
of the same interval reuses what is committed and never registers a second model version.
Config: DAG param ``config`` (a YAML path of ``DagConfig``) or the Airflow Variable ``relsum_config``,
plus ``overrides`` (``key=value`` strings); default = the tiny embedded default.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

DEFAULT_ARGS = {"owner": "relsum", "retries": 2, "retry_delay": dt.timedelta(minutes=5),
                "execution_timeout": dt.timedelta(hours=2)}
PARAMS = {"config": Param("", type="string", description="YAML path of DagConfig ('' = Variable "
                                                         "relsum_config or the default)"),
          "overrides": Param([], type="array", description="key=value overrides, e.g. "
                                                           "train.trainer.grpo.max_steps=2")}


@dag(dag_id="relsum_retrain", schedule=CronDataIntervalTimetable("0 0 * * 1", timezone="UTC"),
     start_date=dt.datetime(2026, 10, 5, tzinfo=dt.UTC), catchup=False, max_active_runs=1,
     default_args=DEFAULT_ARGS, params=PARAMS, tags=["relsum"], doc_md=__doc__)
def relsum_retrain():
    @task
    def validate(**context) -> dict:  # strict: an empty input or too many rejects stops the run here
        from relsum.pipelines import retrain

        config, key, _, _ = retrain.task_setup(context)
        return retrain.validate_inputs(config, retrain.RETRAIN, key)

    @task
    def extract(**context) -> dict:
        from relsum.pipelines import retrain

        config, key, start, end = retrain.task_setup(context)
        return retrain.extract(config, key, start, end)

    @task
    def score_filter(extracted: dict, **context) -> dict:
        from relsum.pipelines import retrain

        config, key, _, _ = retrain.task_setup(context)
        return retrain.score_filter(config, key, extracted)

    @task(execution_timeout=dt.timedelta(hours=12))  # production: pool/queue="gpu" (see dags/README.md)
    def train(pairs: dict, **context) -> dict:
        from relsum.pipelines import retrain

        config, key, _, _ = retrain.task_setup(context)
        return retrain.train(config, key, pairs)

    @task
    def evaluate(trained: dict, **context) -> dict:
        from relsum.pipelines import retrain

        config, key, _, _ = retrain.task_setup(context)
        return retrain.evaluate(config, key, trained)

    @task
    def register(trained: dict, evaluated: dict, **context) -> dict:
        from relsum.pipelines import retrain

        config, key, _, _ = retrain.task_setup(context)
        return retrain.register(config, key, trained, evaluated)

    @task
    def gate(registered: dict, **context) -> dict:
        from relsum.pipelines import retrain

        config, key, _, _ = retrain.task_setup(context)
        return retrain.gate(config, key, registered)

    extracted = extract()
    validate() >> extracted
    trained = train(score_filter(extracted))
    gate(register(trained, evaluate(trained)))


relsum_retrain()
