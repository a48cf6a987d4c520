"""Test setup: one throw-away state directory per session, set before bentoml is imported."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_STATE = Path(tempfile.mkdtemp(prefix="finbento-test-"))
os.environ["FINBENTO_STATE_DIR"] = str(_STATE / "state")
os.environ["BENTOML_HOME"] = str(_STATE / "bentoml")
os.environ["BENTOML_DO_NOT_TRACK"] = "true"
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

import pytest  # noqa: E402

from finbento.features.credit_risk import EXAMPLE_APPLICANT  # noqa: E402
from finbento.settings import Settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with a fresh MLflow store of their own (BentoML home is per session)."""
    return Settings(state_dir=tmp_path / "state")


@pytest.fixture(scope="session")
def session_state() -> Path:
    return _STATE


def applicant_dict(**overrides: object) -> dict:
    """A valid applicant (a real row shape), with overrides."""
    base = dict(EXAMPLE_APPLICANT)
    base.update(overrides)
    return base


#: Floors a model trained on a few thousand rows clears (the real floors are tested in tests/model).
def sample_policy():
    from finbento.settings import GatePolicy

    return GatePolicy(floors={"roc_auc": 0.6}, ceilings={"brier_score": 0.25})


SAMPLE_ENV = {
    "FINBENTO_CREDIT_RISK_GATE__FLOORS": '{"roc_auc": 0.6}',
    "FINBENTO_CREDIT_RISK_GATE__CEILINGS": '{"brier_score": 0.25}',
}
