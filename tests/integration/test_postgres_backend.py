"""The production registry setup: an MLflow PostgreSQL backend store, chosen by settings only."""

import os
import uuid

import pytest

from finbento.credit_risk import MODEL_NAME
from finbento.settings import Settings
from tests.conftest import sample_policy
from trainers import credit_risk, registry

pytestmark = pytest.mark.integration

PG = os.environ.get("FINBENTO_TEST_POSTGRES", "postgresql://root@127.0.0.1:5432")


@pytest.fixture
def pg_uri():
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(f"{PG}/test", connect_timeout=3, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable at {PG}/test: {exc}")
    db = f"finbento_test_{uuid.uuid4().hex[:8]}"
    admin.execute(f"CREATE DATABASE {db}")
    yield f"{PG}/{db}"
    admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    admin.close()


def test_train_and_promote_with_a_postgresql_backend(pg_uri, tmp_path):
    s = Settings(state_dir=tmp_path, mlflow_tracking_uri=pg_uri, credit_risk_gate=sample_policy())
    result = credit_risk.train(s, sample=2000)
    client = registry.configure(s)
    assert client.tracking_uri == pg_uri
    assert str(registry.get_alias(client, MODEL_NAME).version) == result.version == "1"
    assert client.get_run(result.run_id).data.metrics["test_roc_auc"] > 0.6
    # artifacts still go to the artifact root, not the database
    assert (tmp_path / "mlartifacts").is_dir()
