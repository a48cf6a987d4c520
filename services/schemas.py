"""Request and response schemas of the public routes (the applicant fields live in finbento)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from bentoml.exceptions import UnprocessableEntity
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationInfo,
)
from pydantic_core import core_schema

from finbento.features.credit_risk import Applicant

MAX_BATCH = 1000
#: C0 and C1 control characters but tab, newline and carriage return (Unicode category Cc).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def no_control_chars(text: str) -> str:
    """Pydantic validator of free text: refuses control characters (tab and newlines pass).

    Raises:
        ValueError: naming the first control character's code point and position.
    """
    bad = _CONTROL.search(text)
    if bad:
        raise ValueError(f"control character U+{ord(bad.group()):04X} at position {bad.start()} "
                         "is not allowed (only tab and newlines are)")  # fmt: skip
    return text


class BatchSizeError(UnprocessableEntity):
    """A request holding too few or too many items for a route: HTTP 422 ``field: rule``.

    BentoML answers a ``BentoMLException`` of a 4xx ``error_code`` with its message;
    :class:`services.guard.RequestGuard` turns that answer into the project's 4xx shape with
    :func:`batch_size_detail`.
    """

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")


#: What :class:`BatchSizeError` says: ``field: at most|at least N item(s)|characters..., got M``.
_BATCH_RULE = re.compile(r"^(?P<field>[A-Za-z_][\w.]*): (?P<rule>at (?P<bound>most|least) .+)$")


def batch_size_detail(message: str) -> dict | None:
    """The pydantic-like error item of a :class:`BatchSizeError` message; None for other text.

    Returns:
        ``{"loc": [field], "msg": rule, "type": "too_long" | "too_short"}``.
    """
    m = _BATCH_RULE.match(message)
    if m is None:
        return None
    kind = "too_long" if m["bound"] == "most" else "too_short"
    return {"loc": m["field"].split("."), "msg": m["rule"], "type": kind}


def _items(n: int) -> str:
    return f"{n} item" if n == 1 else f"{n} items"


@dataclass(frozen=True)
class ItemCount:
    """``Annotated`` metadata of a list input: how many items it may hold.

    The bounds appear in the OpenAPI schema (``minItems``/``maxItems``) so clients and
    schemathesis see them, but are checked before the items are, and a count outside them raises
    :class:`BatchSizeError` (HTTP 422, e.g. ``applicants: at most 1000 items, got 1001``)
    instead of a pydantic error (400). A value that is not a list is left to the list's own
    validation (400). Validation stops at the first invalid item (pydantic's ``fail_fast``): the
    400 lists that item's errors (its index in ``loc``) and no more, so 1,000 broken rows cost one
    row's work, not 26,000 errors (35 ms of a worker's event loop, bench/hostile.py).
    ``Annotated[list[X], ItemCount(1, MAX_BATCH)]``.

    Args:
        min_items: fewest items accepted (an empty list answers ``at least 1 item, got 0``).
        max_items: most items accepted.
    """

    min_items: int = 1
    max_items: int = MAX_BATCH

    def check(self, value: Any, info: ValidationInfo) -> Any:
        """Raise :class:`BatchSizeError` for a list outside the bounds; return ``value`` as is."""
        if isinstance(value, list | tuple):
            field = info.field_name or "items"
            if len(value) > self.max_items:
                raise BatchSizeError(field, f"at most {_items(self.max_items)}, got {len(value)}")
            if len(value) < self.min_items:
                raise BatchSizeError(field, f"at least {_items(self.min_items)}, got {len(value)}")
        return value

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        """The list's schema (failing fast) behind a before-validator counting its items."""
        schema = handler(source)
        if schema.get("type") == "list":
            schema["fail_fast"] = True
        return core_schema.with_info_before_validator_function(self.check, schema)

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        """The list's JSON schema with ``minItems`` and ``maxItems``."""
        json_schema = handler(schema)
        json_schema.update(minItems=self.min_items, maxItems=self.max_items)
        return json_schema


ApplicantBatch = Annotated[list[Applicant], ItemCount(1, MAX_BATCH)]


class Reason(BaseModel):
    """A feature that raises this applicant's risk, and by how much."""

    feature: str = Field(description="The feature, in plain words")
    contribution: float = Field(
        description="Its SHAP contribution to the calibrated log-odds of default (> 0 raises risk)"
    )


class CreditRiskPrediction(BaseModel):
    """Credit-risk score of one applicant."""

    default_probability: float = Field(
        ge=0, le=1, description="Calibrated probability of default next month"
    )
    risk_score: int = Field(ge=0, le=100, description="round(100 * default_probability)")
    risk_band: Literal["low", "medium", "high"] = Field(
        description="low: score < 20, medium: 20-49, high: >= 50"
    )
    reasons: list[Reason] = Field(description="Up to 3 features pushing the risk up, largest first")
    model: str = Field("credit-risk", description="Model name")
    model_version: str = Field(description="MLflow registered model version")


class CreditRiskBatchPrediction(BaseModel):
    """Scores of a batch of applicants, in input order."""

    predictions: list[CreditRiskPrediction]


_ID = r"^[A-Za-z0-9_.:\-]{1,64}$"
#: Transaction times accepted (UTC): what a card system can send, inside pandas' datetime64 range.
EARLIEST, LATEST = datetime(1970, 1, 1), datetime(2100, 1, 1)


def plausible_time(value: datetime) -> datetime:
    """Pydantic validator: a transaction time between :data:`EARLIEST` and :data:`LATEST` (UTC).

    Raises:
        ValueError: outside that range (also for dates whose UTC conversion overflows).
    """
    try:
        utc = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        raise ValueError("must be between 1970-01-01 and 2099-12-31 (UTC)")
    return value


class TransactionIn(BaseModel):
    """A card transaction as it arrives."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    transaction_id: str = Field(pattern=_ID, description="Unique id (idempotency key)")
    tx_datetime: Annotated[datetime, AfterValidator(plausible_time)] = Field(
        description="ISO 8601, 1970-2099; with a zone it is converted to UTC"
    )
    customer_id: str = Field(pattern=_ID, description="Card holder id")
    terminal_id: str = Field(pattern=_ID, description="Merchant terminal id")
    tx_amount: float = Field(ge=0, le=1_000_000, description="Amount, in the account currency")


TransactionBatch = Annotated[list[TransactionIn], ItemCount(1, MAX_BATCH)]


class IngestResult(BaseModel):
    """What ``POST /transactions`` stored."""

    ingested: int = Field(description="New transactions stored")
    duplicates: int = Field(description="Transactions already stored (ignored)")
    error: str | None = Field(None, description="Set, with status 503, when nothing was stored")


class FraudLabel(BaseModel):
    """A confirmed label for a stored transaction."""

    model_config = ConfigDict(extra="forbid", strict=True)

    transaction_id: str = Field(pattern=_ID)
    is_fraud: bool


class FeedbackResult(BaseModel):
    """What ``POST /feedback/fraud`` recorded."""

    recorded: int = Field(description="Labels of transactions found in the feature store")
    unknown: list[str] = Field(description="Transaction ids the feature store does not hold")
    error: str | None = Field(None, description="Set, with status 503, when nothing was recorded")


class FraudPrediction(BaseModel):
    """Fraud score of one transaction."""

    transaction_id: str
    fraud_probability: float = Field(ge=0, le=1)
    is_fraud: bool = Field(description="fraud_probability >= threshold")
    threshold: float = Field(description="Decision threshold of this model version")
    degraded: bool = Field(description="True if the feature store was unreachable")
    model: str = "fraud"
    model_version: str


class FraudBatchPrediction(BaseModel):
    """Fraud scores in input order."""

    predictions: list[FraudPrediction]


class AnomalyReason(BaseModel):
    """A feature far from usual for this transaction."""

    feature: str
    robust_z: float = Field(description="(value - training median) / training IQR")


class AnomalyPrediction(BaseModel):
    """Anomaly score of one transaction."""

    transaction_id: str
    anomaly_score: float = Field(description="Higher = more unusual (-IsolationForest score)")
    is_anomaly: bool = Field(description="anomaly_score >= the 1 %-of-traffic threshold")
    reasons: list[AnomalyReason]
    degraded: bool = Field(description="True if the feature store was unreachable")
    model: str = "anomaly"
    model_version: str


class AnomalyBatchPrediction(BaseModel):
    """Anomaly scores in input order."""

    predictions: list[AnomalyPrediction]
