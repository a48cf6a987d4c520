import pytest

from finbento.settings import CREDIT_RISK_GATE, GatePolicy
from trainers.gate import decide

GOOD = {
    "roc_auc": 0.785, "average_precision": 0.55, "brier_score": 0.134,
    "demographic_parity_ratio__sex": 0.76, "equalized_odds_difference__sex": 0.02,
    "demographic_parity_ratio__age_band": 0.48, "equalized_odds_difference__age_band": 0.13,
}  # fmt: skip


def test_first_candidate_needs_only_the_floors():
    d = decide(GOOD, None, CREDIT_RISK_GATE)
    assert d.promote and all(r.startswith("PASS") for r in d.reasons)
    assert any("no other champion" in r for r in d.reasons)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("roc_auc", 0.70),
        ("average_precision", 0.30),
        ("brier_score", 0.20),
        ("demographic_parity_ratio__sex", 0.5),
        ("equalized_odds_difference__age_band", 0.35),
    ],
)
def test_each_floor_refuses_and_says_why(key, value):
    d = decide({**GOOD, key: value}, None, CREDIT_RISK_GATE)
    assert not d.promote
    assert d.reasons[0].startswith("FAIL") and key in d.reasons[0]


def test_missing_metric_refuses():
    metrics = dict(GOOD)
    del metrics["equalized_odds_difference__sex"]
    d = decide(metrics, None, CREDIT_RISK_GATE)
    assert not d.promote and "missing" in d.reasons[0]


def test_champion_margin():
    policy = CREDIT_RISK_GATE.model_copy(update={"max_drop": 0.005})
    champion = {**GOOD, "roc_auc": 0.788}
    assert decide({**GOOD, "roc_auc": 0.784}, champion, policy).promote
    refused = decide({**GOOD, "roc_auc": 0.780}, champion, policy)
    assert not refused.promote and "vs champion" in refused.reasons[0]
    assert refused.champion == champion and refused.to_dict()["candidate"]["roc_auc"] == 0.780


def test_compare_metric_and_ceiling_are_configurable():
    policy = GatePolicy(floors={"ap": 0.4}, ceilings={"fpr": 0.02}, compare_metric="ap",
                        max_drop=0.01)  # fmt: skip
    assert decide({"ap": 0.6, "fpr": 0.01}, {"ap": 0.605}, policy).promote
    assert not decide({"ap": 0.6, "fpr": 0.03}, None, policy).promote
    refused = decide({"ap": 0.58, "fpr": 0.01}, {"ap": 0.6}, policy)
    assert not refused.promote and refused.reasons[0].startswith("FAIL: ap vs champion")
