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


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\x9f"])
def test_free_text_fields_refuse_control_characters_but_keep_tabs_newlines_and_unicode(char):
    from pydantic import TypeAdapter, ValidationError

    from services.advisor_schemas import AdviceRequest
    from services.category_schemas import Description
    from services.intent_schemas import Query
    from services.ner_schemas import NerText

    for kind in (Query, Description, NerText):
        ta = TypeAdapter(kind)
        assert ta.validate_python("caf\u00e9\tline\nnext \u200d\U0001f4b3").startswith("caf")
        with pytest.raises(ValidationError, match=f"U\\+{ord(char):04X}"):
            ta.validate_python(f"pay {char} rent")
    with pytest.raises(ValidationError, match="control character"):
        AdviceRequest(session_id="s1", message=f"hi{char}")


@pytest.mark.parametrize(
    ("when", "ok"),
    [("2018-04-01T00:00:31", True), ("2018-04-01T05:30:00+05:30", True),
     ("1970-01-01T00:00:00Z", True), ("1969-12-31T23:59:59Z", False),
     ("0056-10-21T17:30:16Z", False),
     ("9695-03-27T18:55:38+09:29", False), ("0001-01-01T00:00:00+05:00", False),
     ("2100-01-01T00:00:00", False)],
)  # fmt: skip
def test_transaction_times_outside_1970_2099_are_refused_naming_the_field(when, ok):
    from pydantic import ValidationError

    from services.schemas import TransactionIn

    tx = {"transaction_id": "t1", "tx_datetime": when, "customer_id": "c", "terminal_id": "t",
          "tx_amount": 12.5}  # fmt: skip
    if ok:
        assert TransactionIn.model_validate(tx).tx_datetime.year in (1970, 2018)
    else:
        with pytest.raises(ValidationError) as err:
            TransactionIn.model_validate(tx)
        assert err.value.errors()[0]["loc"] == ("tx_datetime",)
