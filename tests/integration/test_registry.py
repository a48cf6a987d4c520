"""Training, registry, gate and rollback against a real MLflow (sqlite) store."""

import pytest
from mlflow import MlflowClient

from finbento.credit_risk import MODEL_NAME
from finbento.settings import GatePolicy
from tests.conftest import sample_policy
from trainers import credit_risk, registry

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from finbento.settings import Settings

    s = Settings(state_dir=tmp_path_factory.mktemp("registry"), credit_risk_gate=sample_policy())
    first = credit_risk.train(s, sample=3000)
    return s, first, registry.configure(s)


def test_first_training_is_registered_logged_and_promoted(store):
    _, first, client = store
    assert first.version == "1" and first.decision.promote
    assert str(registry.get_alias(client, MODEL_NAME).version) == "1"
    assert registry.champion_history(client, MODEL_NAME) == ["1"]
    run = client.get_run(first.run_id)
    assert run.data.metrics["test_roc_auc"] == pytest.approx(first.metrics["roc_auc"])
    for key in (
        "test_average_precision",
        "test_brier_score",
        "test_ks_statistic",
        "test_demographic_parity_ratio__sex",
        "test_equalized_odds_difference__age_band",
    ):
        assert key in run.data.metrics
    artifacts = {
        f.path
        for d in ("plots", "reference", "gate", "")
        for f in client.list_artifacts(first.run_id, d or None)
    }
    for path in (
        "plots/roc_curve.png",
        "plots/pr_curve.png",
        "plots/calibration_curve.png",
        "plots/feature_importance.png",
        "reference/reference.parquet",
        "gate/decision-v1.json",
        "feature_importance.json",
    ):
        assert path in artifacts
    mv = client.get_model_version(MODEL_NAME, "1")
    assert mv.tags["gate.promote"] == "true" and "PASS: roc_auc" in mv.tags["gate.reasons"]


def test_registered_model_scores_like_the_trained_one(store):
    s, first, _ = store
    split = credit_risk.load_split(s, sample=3000)
    metrics = credit_risk.evaluate(credit_risk.load_scorer("1"), split.test)
    assert metrics["roc_auc"] == pytest.approx(first.metrics["roc_auc"], abs=1e-9)


def test_refused_candidate_leaves_the_champion_alone(store):
    s, _, client = store
    strict = s.model_copy(update={"credit_risk_gate": GatePolicy(floors={"roc_auc": 0.99})})
    second = credit_risk.train(strict, sample=3000)
    assert not second.decision.promote
    assert second.decision.reasons[0].startswith("FAIL: roc_auc")
    assert str(registry.get_alias(client, MODEL_NAME).version) == "1"
    assert (
        str(registry.get_alias(client, MODEL_NAME, registry.CHALLENGER).version) == second.version
    )
    assert client.get_model_version(MODEL_NAME, second.version).tags["gate.promote"] == "false"


def test_gate_scores_the_champion_on_the_same_rows(store):
    s, _, client = store
    third = credit_risk.train(s, sample=3000, promote=False)
    split = credit_risk.load_split(s, sample=3000)
    decision = credit_risk.gate(client, s, third.version, split)
    champion_auc = credit_risk.evaluate(credit_risk.load_scorer("1"), split.test)["roc_auc"]
    assert decision.champion["roc_auc"] == pytest.approx(champion_auc)


def test_rollback_follows_the_champion_history(store):
    _, _, client = store
    latest = str(registry.latest_version(client, MODEL_NAME).version)
    registry.set_champion(client, MODEL_NAME, latest)
    assert registry.champion_history(client, MODEL_NAME) == ["1", latest]
    assert registry.rollback(client, MODEL_NAME) == "1"
    assert str(registry.get_alias(client, MODEL_NAME).version) == "1"
    assert client.get_model_version(MODEL_NAME, latest).tags["rolled_back"] == "true"
    with pytest.raises(registry.RegistryError, match="no earlier champion"):
        registry.rollback(client, MODEL_NAME)


def test_unknown_model_has_no_champion(store):
    _, _, client = store
    assert registry.get_alias(client, "no-such-model") is None
    assert isinstance(client, MlflowClient)
