import numpy as np
import pytest
from pydantic import ValidationError

from finbento.features.credit_risk import (
    ENGINEERED,
    FEATURES,
    PLAIN_NAMES,
    RAW_COLUMNS,
    Applicant,
    age_band,
    feature_matrix,
    raw_matrix,
)
from tests.conftest import applicant_dict


def test_every_feature_has_a_plain_name_and_sex_is_not_a_model_input():
    assert set(PLAIN_NAMES) == set(FEATURES)
    assert "sex" in RAW_COLUMNS and "sex" not in FEATURES
    assert len(FEATURES) == len(RAW_COLUMNS) - 1 + len(ENGINEERED)


def test_engineered_features_follow_their_formulas():
    a = Applicant(**applicant_dict())
    x = feature_matrix(raw_matrix([a]))[0]
    f = dict(zip(FEATURES, x, strict=True))
    assert f["utilization"] == pytest.approx(48000 / 50000)
    assert f["utilization_6m"] == pytest.approx(np.mean([48, 47, 46, 30, 29, 28]) * 1000 / 50000)
    assert f["payment_ratio"] == pytest.approx(0 / 47000)
    assert f["payment_ratio_6m"] == pytest.approx(5800 / 228000, rel=1e-5)
    assert f["months_delayed"] == 2
    assert f["max_delay"] == 2
    assert f["bill_growth"] == pytest.approx((48000 - 28000) / 50000)
    assert f["limit_bal"] == 50000 and f["age"] == 35


def test_payment_ratio_guards_against_zero_and_negative_bills():
    a = Applicant(**applicant_dict(bill_amt2=-500.0, pay_amt1=300.0))
    f = dict(zip(FEATURES, feature_matrix(raw_matrix([a]))[0], strict=True))
    assert f["payment_ratio"] == pytest.approx(300.0)
    assert np.isfinite(feature_matrix(raw_matrix([a]))).all()


def test_feature_matrix_rejects_wrong_shape():
    with pytest.raises(ValueError, match="shape"):
        feature_matrix(np.zeros((3, 5)))


def test_raw_matrix_keeps_row_order():
    rows = [Applicant(**applicant_dict(age=20 + i)) for i in range(5)]
    assert raw_matrix(rows)[:, RAW_COLUMNS.index("age")].tolist() == [20, 21, 22, 23, 24]


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("age", 17, "greater_than_equal"),
        ("age", "35", "int_type"),
        ("pay_0", 10, "less_than_equal"),
        ("limit_bal", 0, "greater_than_equal"),
        ("limit_bal", 5e-324, "greater_than_equal"),  # ratios to it would overflow to inf
        ("limit_bal", float("nan"), "finite_number"),
        ("pay_amt1", -1.0, "greater_than_equal"),
        ("sex", 3, "less_than_equal"),
    ],
)
def test_applicant_rejects_out_of_rule_values_naming_the_field(field, value, error):
    with pytest.raises(ValidationError) as exc:
        Applicant(**applicant_dict(**{field: value}))
    (err,) = exc.value.errors()
    assert err["loc"] == (field,) and err["type"] == error


def test_applicant_rejects_unknown_and_missing_fields():
    with pytest.raises(ValidationError, match="pay_1"):
        Applicant(**applicant_dict(pay_1=0))
    data = applicant_dict()
    del data["bill_amt3"]
    with pytest.raises(ValidationError, match="bill_amt3"):
        Applicant(**data)


def test_age_bands_edges():
    assert age_band(np.array([18, 24, 25, 34, 35, 54, 55, 99])).tolist() == [
        "<25", "<25", "25-34", "25-34", "35-44", "45-54", "55+", "55+"
    ]  # fmt: skip
