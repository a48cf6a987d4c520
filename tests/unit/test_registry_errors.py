"""An unreachable registry is an error, never "no champion"."""

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from finbento.serving import free_port
from trainers import registry


def test_get_alias_raises_when_mlflow_is_unreachable(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    with pytest.raises(MlflowException):
        registry.get_alias(client, "credit-risk")


def test_get_alias_is_none_for_a_model_that_does_not_exist(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert registry.get_alias(client, "no-such-model") is None
    client.create_registered_model("no-alias-yet")
    assert registry.get_alias(client, "no-alias-yet") is None


def test_configure_bounds_mlflow_http_retries_unless_set(monkeypatch, tmp_path):
    import os

    from finbento.settings import Settings

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "9")  # so teardown restores the original
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    registry.configure(Settings(state_dir=tmp_path, mlflow_http_retries=2))
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # an explicit setting wins
    registry.configure(Settings(state_dir=tmp_path, mlflow_http_retries=5))
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
