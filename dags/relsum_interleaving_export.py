"""Manual: export team-draft interleaved lists, champion summaries vs title-only ranking.

resolve the ``champion`` alias -> summarize the candidates' products with it -> export
(``relsum.pipelines.interleaving.run_export``) into
``<RELSUM_HOME>/runs/relsum_interleaving_export/<logical date or run id>/export/``.
Config as in ``relsum_retrain`` (param ``config`` / Variable ``relsum_config`` + ``overrides``).
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, dag, task

DEFAULT_ARGS = {"owner": "relsum", "retries": 1, "retry_delay": dt.timedelta(minutes=2),
                "execution_timeout": dt.timedelta(hours=2)}
PARAMS = {"config": Param("", type="string", description="YAML path of DagConfig ('' = Variable "
                                                         "relsum_config or the default)"),
          "overrides": Param([], type="array", description="key=value overrides")}


@dag(dag_id="relsum_interleaving_export", schedule=None, start_date=dt.datetime(2026, 10, 5, tzinfo=dt.UTC),
     catchup=False, default_args=DEFAULT_ARGS, params=PARAMS, tags=["relsum"], doc_md=__doc__)
def relsum_interleaving_export():
    @task
    def resolve_champion(**context) -> dict:
        from relsum.pipelines import retrain

        config, key, _, _ = retrain.task_setup(context)
        return retrain.resolve_champion(config, retrain.EXPORT, key)

    @task
    def summarize_candidates(champion: dict, **context) -> dict:
        from relsum.pipelines import retrain

        config, key, _, _ = retrain.task_setup(context)
        return retrain.summarize_candidates(config, key, champion)

    @task
    def export(prepared: dict, **context) -> dict:
        from relsum.pipelines import retrain

        config, key, _, _ = retrain.task_setup(context)
        return retrain.export(config, key, prepared)

    export(summarize_candidates(resolve_champion()))


relsum_interleaving_export()
