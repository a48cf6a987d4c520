"""Quality gates of credit-risk on the shipped data: held-out test split, never training rows."""

import numpy as np
import pytest

from finbento.features.credit_risk import RAW_COLUMNS, TARGET
from finbento.settings import CREDIT_RISK_GATE, Settings
from trainers import credit_risk
from trainers.gate import decide

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def fitted():
    s = Settings()
    split = credit_risk.load_split(s)
    scorer = credit_risk.fit(split, s.seed)
    return scorer, split


@pytest.fixture(scope="module")
def test_metrics(fitted):
    scorer, split = fitted
    return credit_risk.evaluate(scorer, split.test)


def test_test_roc_auc_meets_the_target(test_metrics):
    assert test_metrics["n"] == 4800
    assert test_metrics["roc_auc"] >= 0.78


def test_probabilities_are_calibrated(fitted, test_metrics):
    scorer, split = fitted
    p = scorer.default_probability(split.test[list(RAW_COLUMNS)].to_numpy())
    assert test_metrics["brier_score"] <= 0.14
    assert abs(p.mean() - split.test[TARGET].mean()) < 0.02  # calibration-in-the-large
    high = p >= 0.5
    assert split.test[TARGET][high].mean() >= 0.5  # "high" band defaults more often than not


def test_the_default_gate_passes_on_full_data(test_metrics):
    decision = decide(test_metrics, None, CREDIT_RISK_GATE)
    assert decision.promote, decision.reasons


def test_sex_does_not_change_the_score(fitted):
    scorer, split = fitted
    raw = split.test[list(RAW_COLUMNS)].to_numpy().copy()
    flipped = raw.copy()
    i = RAW_COLUMNS.index("sex")
    flipped[:, i] = 3 - flipped[:, i]
    np.testing.assert_array_equal(scorer.score(raw), scorer.score(flipped))


def test_a_recent_payment_delay_raises_risk(fitted):
    """Directional expectation: going from paid-on-time to 3 months late must not lower risk."""
    scorer, split = fitted
    raw = split.test[list(RAW_COLUMNS)].to_numpy().copy()
    on_time, late = raw.copy(), raw.copy()
    on_time[:, RAW_COLUMNS.index("pay_0")] = 0
    late[:, RAW_COLUMNS.index("pay_0")] = 3
    diff = scorer.default_probability(late) - scorer.default_probability(on_time)
    assert (diff >= 0).mean() > 0.98 and diff.mean() > 0.1


def test_reasons_name_the_delay_for_a_late_payer(fitted):
    from finbento.credit_risk import top_reasons

    scorer, split = fitted
    row = split.test[list(RAW_COLUMNS)].to_numpy()[:1].copy()
    row[0, RAW_COLUMNS.index("pay_0")] = 4
    names = [n for n, _ in top_reasons(scorer.score(row)[0, 1:])]
    assert "Repayment status last month" in names
