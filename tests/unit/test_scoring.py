import numpy as np
import pytest
import xgboost as xgb

from finbento.calibration import PlattCalibrator
from finbento.credit_risk import CreditRiskScorer, risk_band, risk_score, top_reasons
from finbento.features.credit_risk import FEATURES, PLAIN_NAMES, RAW_COLUMNS


@pytest.mark.parametrize(
    ("score", "band"), [(0, "low"), (19, "low"), (20, "medium"), (49, "medium"), (50, "high")]
)
def test_risk_band_cut_offs(score, band):
    assert risk_band(score) == band


def test_risk_score_is_rounded_percent():
    assert risk_score(0.0) == 0 and risk_score(0.505) == 50 and risk_score(1.0) == 100


def test_top_reasons_are_positive_sorted_and_at_most_three():
    contributions = np.zeros(len(FEATURES))
    contributions[[0, 5, 7, 9]] = [0.2, 0.9, -3.0, 0.5]
    reasons = top_reasons(contributions)
    assert [r[0] for r in reasons] == [
        PLAIN_NAMES[FEATURES[5]], PLAIN_NAMES[FEATURES[9]], PLAIN_NAMES[FEATURES[0]]
    ]  # fmt: skip
    assert top_reasons(-np.abs(contributions) - 0.1) == []


def test_platt_calibrator_is_monotone_and_round_trips():
    cal = PlattCalibrator(a=0.8, b=-0.3)
    p = cal.probability(np.array([-3.0, 0.0, 3.0]))
    assert np.all(np.diff(p) > 0) and p[1] == pytest.approx(1 / (1 + np.exp(0.3)))
    assert PlattCalibrator.from_dict(cal.to_dict()) == cal


@pytest.fixture(scope="module")
def scorer():
    rng = np.random.default_rng(0)
    raw = rng.uniform(1, 10, size=(300, len(RAW_COLUMNS)))
    raw[:, RAW_COLUMNS.index("limit_bal")] = 10_000
    from finbento.features.credit_risk import feature_matrix

    y = (raw[:, RAW_COLUMNS.index("pay_0")] > 5).astype(int)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 2},
        xgb.DMatrix(feature_matrix(raw), label=y, feature_names=list(FEATURES)),
        num_boost_round=10,
    )
    return CreditRiskScorer(booster, PlattCalibrator(1.1, -0.2)), raw


def test_score_columns_add_up_to_the_calibrated_probability(scorer):
    s, raw = scorer
    out = s.score(raw[:20])
    assert out.shape == (20, 1 + len(FEATURES))
    np.testing.assert_allclose(out[:, 0], s.default_probability(raw[:20]), rtol=1e-5)
    # calibrated log-odds = a * (sum of contributions + bias) + b
    bias_part = np.log(out[:, 0] / (1 - out[:, 0])) - out[:, 1:].sum(axis=1)
    assert np.ptp(bias_part) < 1e-4


def test_save_load_round_trip(scorer, tmp_path):
    s, raw = scorer
    s.save(tmp_path)
    loaded = CreditRiskScorer.load(tmp_path)
    np.testing.assert_allclose(loaded.score(raw), s.score(raw), rtol=1e-6)
    assert loaded.calibrator == s.calibrator


def test_load_refuses_a_model_trained_on_other_features(scorer, tmp_path):
    s, _ = scorer
    s.save(tmp_path)
    meta = (tmp_path / "scorer.json").read_text().replace('"limit_bal"', '"credit_limit"')
    (tmp_path / "scorer.json").write_text(meta)
    with pytest.raises(ValueError, match="other features"):
        CreditRiskScorer.load(tmp_path)
