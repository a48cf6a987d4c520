"""The finbento command line, run as a user runs it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SAMPLE_ENV

pytestmark = pytest.mark.integration
FINBENTO = str(Path(sys.executable).parent / "finbento")


def run(args, env, check=True):
    return subprocess.run(
        [FINBENTO, *args], env=env, capture_output=True, text=True, check=check, timeout=300
    )


def test_train_models_promote_rollback(tmp_path):
    env = {
        **os.environ,
        **SAMPLE_ENV,
        "FINBENTO_STATE_DIR": str(tmp_path / "state"),
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "COLUMNS": "200",
    }
    out = run(["train", "credit-risk", "--sample", "2500"], env).stdout
    assert "gate: PROMOTE" in out and "roc_auc" in out
    out = run(["train", "credit-risk", "--sample", "2500", "--no-promote"], env).stdout
    assert "version 2" in out

    models = run(["models"], env).stdout
    assert "challenger" in models and "champion" in models

    assert "champion -> version 2" in run(["promote", "credit-risk", "--version", "2"], env).stdout
    assert "champion -> version 1" in run(["rollback", "credit-risk"], env).stdout
    failed = run(["rollback", "credit-risk"], env, check=False)
    assert failed.returncode == 1 and "no earlier champion" in failed.stdout

    out = run(["import", "credit-risk"], env).stdout
    assert "credit-risk:v1-" in out
    bad = run(["train", "no-such-model"], env, check=False)
    assert bad.returncode == 2 and "unknown model" in bad.stdout


def test_features_load_spending_stores_the_household_once(tmp_path):
    import uuid

    import redis

    from finbento.spending_store import SpendingStore

    prefix = f"finbento-test-{uuid.uuid4().hex[:8]}"
    store = SpendingStore.from_url("redis://127.0.0.1:6379/0", prefix)
    try:
        store.r.ping()
    except redis.exceptions.RedisError as exc:
        pytest.skip(f"no Redis at 127.0.0.1:6379: {exc}")
    env = {**os.environ, "FINBENTO_STATE_DIR": str(tmp_path / "state"),
           "FINBENTO_REDIS_PREFIX": prefix, "COLUMNS": "200"}  # fmt: skip
    try:
        first = run(["features", "load-spending", "--user-id", "hh"], env).stdout
        assert "monthly totals of" in first and "'hh'" in first
        history = store.history("hh")
        assert history["date"].dt.strftime("%Y-%m").nunique() == 39  # Jan 2015 - Mar 2018
        assert (history["amount"] > 0).all()
        run(["features", "load-spending", "--user-id", "hh"], env)
        assert (
            store.history("hh")
            .sort_values(["date", "category"])
            .reset_index(drop=True)
            .equals(history.sort_values(["date", "category"]).reset_index(drop=True))
        )  # idempotent: the same totals, not doubled
    finally:
        store.clear()
