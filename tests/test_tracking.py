import mlflow
import pytest

from relsum.lifecycle import tracking
from relsum.lifecycle.config import TrackingConfig


@pytest.fixture()
def tracking_config(tmp_path, monkeypatch):
    monkeypatch.setenv("RELSUM_HOME", str(tmp_path))
    return TrackingConfig(experiment="test-exp", registered_model="test-model")


def test_run_metrics_and_model_version_read_back(tracking_config, tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    with tracking.tracked_run(tracking_config, "unit", tags={"relsum.algo": "grpo"}) as run:
        tracking.log_params({"lr": 1e-5, "long": "x" * 9000})
        tracking.log_metrics({"reward": -0.25, "none": None}, step=1)
        tracking.log_artifacts(adapter, "adapter")
        version = tracking.register_adapter(tracking_config, run.info.run_id)
    client = mlflow.MlflowClient(tracking_uri=tracking_config.resolved_uri())
    got = client.get_run(run.info.run_id)
    assert got.data.metrics["reward"] == -0.25 and got.data.params["lr"] == "1e-05"
    assert got.data.tags["relsum.algo"] == "grpo"
    mv = client.get_model_version("test-model", version)
    assert mv.run_id == run.info.run_id and mv.source.endswith("/adapter")
    assert (tmp_path / "mlflow.db").exists()
    # A second run adds a second version of the same registered model.
    with tracking.tracked_run(tracking_config, "unit2") as run2:
        tracking.log_artifacts(adapter, "adapter")
        assert tracking.register_adapter(tracking_config, run2.info.run_id) == str(int(version) + 1)


def test_disabled_tracking_yields_none(tracking_config):
    tracking_config.enabled = False
    with tracking.tracked_run(tracking_config, "off") as run:
        assert run is None
