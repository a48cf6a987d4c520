import re
from pathlib import Path

from bentoml._internal.tag import Tag

from finbento.bentos import BUNDLES, MODEL_ARGS, SHORT_NAMES, bento_version
from finbento.settings import PROJECT_ROOT, Settings
from services.args import BentoArgs
from services.schemas import MAX_BATCH


def test_embedded_defaults_live_in_the_state_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("FINBENTO_STATE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert s.tracking_uri == f"sqlite:///{tmp_path / '.finbento' / 'mlflow.db'}"
    assert s.artifact_root == (tmp_path / ".finbento" / "mlartifacts").as_uri()
    assert s.bentoml_home_dir == tmp_path / ".finbento" / "bentoml"
    assert s.credit_risk_data_path.exists()


def test_production_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("FINBENTO_MLFLOW_TRACKING_URI", "postgresql://mlflow@db:5432/mlflow")
    monkeypatch.setenv("FINBENTO_MLFLOW_ARTIFACT_ROOT", "s3://ml-artifacts/finbento")
    monkeypatch.setenv("FINBENTO_CREDIT_RISK_GATE__FLOORS", '{"roc_auc": 0.77}')
    s = Settings()
    assert s.tracking_uri == "postgresql://mlflow@db:5432/mlflow"
    assert s.artifact_root == "s3://ml-artifacts/finbento"
    assert s.credit_risk_gate.floors == {"roc_auc": 0.77}
    assert s.credit_risk_gate.max_drop == 0.005 and s.fraud_gate.floors["roc_auc"] == 0.78


def test_bento_version_is_derived_from_models_and_valid():
    tags = {"credit-risk": "credit-risk:v3-1a2b3c4d"}
    v = bento_version(tags, {"credit-risk": "3"})
    assert v.startswith("cr3-") and v == bento_version(tags, {"credit-risk": "3"})
    assert bento_version({"credit-risk": "credit-risk:v4-99999999"}, {"credit-risk": "4"}) != v
    assert str(Tag.from_taglike(f"finbento:{v}")) == f"finbento:{v}" and len(v) <= 63


def test_bundles_files_exist_and_models_are_wired():
    for bundle in BUNDLES.values():
        text = (PROJECT_ROOT / bundle.bentofile).read_text()
        assert re.search(rf"^name: {bundle.bento_name}$", text, re.M)
        for model in bundle.models:
            assert model in SHORT_NAMES and MODEL_ARGS[model] in BentoArgs.model_fields
    assert MAX_BATCH == 1000


def test_state_dir_is_git_ignored():
    assert ".finbento/" in (Path(PROJECT_ROOT) / ".gitignore").read_text().splitlines()
