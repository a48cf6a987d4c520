import pytest
from pydantic import TypeAdapter, ValidationError

from finbento.features.credit_risk import EXAMPLE_APPLICANT, Applicant
from services.schemas import MAX_BATCH, ApplicantBatch, CreditRiskPrediction

batch = TypeAdapter(ApplicantBatch)


def test_batch_size_limits():
    assert len(batch.validate_python([EXAMPLE_APPLICANT] * MAX_BATCH)) == MAX_BATCH
    for n in (0, MAX_BATCH + 1):
        with pytest.raises(ValidationError) as exc:
            batch.validate_python([EXAMPLE_APPLICANT] * n)
        assert exc.value.errors()[0]["type"] in {"too_short", "too_long"}


def test_a_bad_row_is_located_by_index():
    rows = [EXAMPLE_APPLICANT, {**EXAMPLE_APPLICANT, "age": 101}]
    with pytest.raises(ValidationError) as exc:
        batch.validate_python(rows)
    assert exc.value.errors()[0]["loc"] == (1, "age")


def test_prediction_schema_enforces_its_ranges():
    ok = {
        "default_probability": 0.4,
        "risk_score": 40,
        "risk_band": "medium",
        "reasons": [],
        "model_version": "3",
    }
    assert CreditRiskPrediction(**ok).model == "credit-risk"
    for bad in ({"default_probability": 1.2}, {"risk_score": 101}, {"risk_band": "severe"}):
        with pytest.raises(ValidationError):
            CreditRiskPrediction(**{**ok, **bad})


def test_openapi_schema_documents_units_ranges_and_an_example():
    schema = Applicant.model_json_schema()
    assert schema["example"] == EXAMPLE_APPLICANT
    assert schema["additionalProperties"] is False
    age = schema["properties"]["age"]
    assert (age["minimum"], age["maximum"]) == (18, 100) and "years" in age["description"]
    assert "NT$" in schema["properties"]["bill_amt1"]["description"]
    assert Applicant.model_validate(EXAMPLE_APPLICANT)
