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
