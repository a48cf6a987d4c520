from http import HTTPStatus

import pytest
from pydantic import TypeAdapter, ValidationError

from finbento.features.credit_risk import EXAMPLE_APPLICANT, Applicant
from services.schemas import (
    MAX_BATCH,
    ApplicantBatch,
    BatchSizeError,
    CreditRiskPrediction,
    batch_size_detail,
)

batch = TypeAdapter(ApplicantBatch)


def test_batch_size_limits_are_422_naming_field_and_rule():
    assert len(batch.validate_python([EXAMPLE_APPLICANT] * MAX_BATCH)) == MAX_BATCH
    for n, rule in ((0, "at least 1 item, got 0"), (MAX_BATCH + 1, "at most 1000 items, got 1001")):
        with pytest.raises(BatchSizeError) as exc:
            batch.validate_python([EXAMPLE_APPLICANT] * n)
        assert exc.value.error_code == HTTPStatus.UNPROCESSABLE_ENTITY
        assert str(exc.value) == f"items: {rule}"  # no field name outside a model


def test_a_non_list_is_still_a_pydantic_error_not_a_batch_size_one():
    with pytest.raises(ValidationError) as exc:
        batch.validate_python({"not": "a list"})
    assert exc.value.errors()[0]["type"] == "list_type"


def _routes():
    from services.category_routes import CategoryRoutes
    from services.intent_routes import IntentRoutes
    from services.ner_routes import NerRoutes
    from services.routes import CreditRiskRoutes
    from services.spending_routes import SpendingRoutes
    from services.transaction_routes import TransactionRoutes

    return {
        "/predict/credit-risk/batch": (CreditRiskRoutes.predict_credit_risk_batch, "applicants"),
        "/transactions": (TransactionRoutes.ingest_transactions, "transactions"),
        "/predict/fraud/batch": (TransactionRoutes.predict_fraud_batch, "transactions"),
        "/predict/anomaly/batch": (TransactionRoutes.predict_anomaly_batch, "transactions"),
        "/feedback/fraud": (TransactionRoutes.feedback_fraud, "labels"),
        "/predict/intent/batch": (IntentRoutes.predict_intent_batch, "queries"),
        "/predict/ner/batch": (NerRoutes.predict_ner_batch, "texts"),
        "/predict/category/batch": (CategoryRoutes.predict_category_batch, "transactions"),
        "/predict/spending": (SpendingRoutes.predict_spending, "history"),
    }


#: route -> most items; the intent batch is smaller (a transformer), spending history larger.
LIMITS = {"/predict/intent/batch": 256, "/predict/spending": 10 * MAX_BATCH}
OTHER_FIELDS = {"/predict/spending": {"user_id": "u1", "months": 3}}


@pytest.mark.parametrize("route", list(_routes()))
def test_every_batch_route_limits_its_items_with_a_422_and_documents_it(route):
    method, field = _routes()[route]
    limit, other = LIMITS.get(route, MAX_BATCH), OTHER_FIELDS.get(route, {})
    item = "" if route == "/predict/intent/batch" else {}  # an invalid item: counted first
    for n, rule in ((limit + 1, f"at most {limit} items, got {limit + 1}"),
                    (0, "at least 1 item, got 0")):  # fmt: skip
        with pytest.raises(BatchSizeError) as exc:
            method.input_spec.model_validate({**other, field: [item] * n})
        assert str(exc.value) == f"{field}: {rule}"
        assert batch_size_detail(str(exc.value)) == {
            "loc": [field], "msg": rule, "type": "too_long" if n else "too_short"}  # fmt: skip
    with pytest.raises(ValidationError):  # at the limit the count passes; the items are checked
        method.input_spec.model_validate({**other, field: [item] * limit})
    schema = method.input_spec.model_json_schema()["properties"][field]
    array = next((s for s in schema.get("anyOf", []) if s.get("type") == "array"), schema)
    assert (array["minItems"], array["maxItems"]) == (1, limit)


def test_batch_size_detail_reads_only_batch_size_messages():
    assert batch_size_detail("texts: at most 100000 characters in all, got 100001")["loc"] == [
        "texts"
    ]
    assert batch_size_detail("unknown product codes: x") is None
    assert batch_size_detail("Authorization error") is None


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
