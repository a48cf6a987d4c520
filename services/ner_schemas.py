"""Request and response schemas of the ``ner`` routes (``/predict/ner``, ``/predict/ner/batch``)."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from finbento.ner import LABELS
from services.schemas import MAX_BATCH, BatchSizeError, ItemCount, no_control_chars

#: Longest text accepted, in characters (chat messages; longer ones answer 400).
MAX_TEXT_CHARS = 2_000
#: Most characters in one batch request, all texts together (keeps a request within the timeout).
MAX_BATCH_CHARS = 100_000
#: Reference dates accepted (relative-date arithmetic stays far from date.min and date.max).
MIN_DATE, MAX_DATE = date(1900, 1, 1), date(2100, 12, 31)


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("text must contain a non-whitespace character")
    return text


def _iso_date(value: object) -> object:
    """Only ``YYYY-MM-DD`` strings (or dates): no timestamps, no datetimes."""
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("reference_date must be an ISO date, YYYY-MM-DD")
    return value


def _batch_chars(texts: list[str]) -> list[str]:
    """Refuse a batch over :data:`MAX_BATCH_CHARS` characters in all (422, like its item count)."""
    total = sum(len(t) for t in texts)
    if total > MAX_BATCH_CHARS:
        raise BatchSizeError("texts", f"at most {MAX_BATCH_CHARS} characters in all, got {total}")
    return texts


NerText = Annotated[
    str,
    Field(min_length=1, max_length=MAX_TEXT_CHARS,
          description=f"A user's message, 1 to {MAX_TEXT_CHARS} characters, not only whitespace; "
                      "entity offsets refer to it unchanged"),
    AfterValidator(_not_blank),
    AfterValidator(no_control_chars),
]  # fmt: skip
NerTexts = Annotated[
    list[NerText],
    ItemCount(1, MAX_BATCH),
    Field(description=f"1 to {MAX_BATCH} messages, {MAX_BATCH_CHARS} characters in all"),
    AfterValidator(_batch_chars),
]  # fmt: skip
ReferenceDate = Annotated[
    date,
    BeforeValidator(_iso_date),
    Field(ge=MIN_DATE, le=MAX_DATE,
          description="The day the text was written (YYYY-MM-DD), for relative dates such as "
                      "'yesterday'; default: today on the server"),
]  # fmt: skip


class NerQuery(BaseModel):
    """One text for the ``ner`` model service, with its reference date."""

    model_config = ConfigDict(extra="forbid")

    text: str
    reference_date: date


class MoneyValue(BaseModel):
    """Normalised amount of a MONEY entity."""

    value: float = Field(description="Amount in the currency's main unit (lakh = 1e5, crore = 1e7)")
    currency: str = Field(
        pattern=r"^[A-Z]{3}$", description="ISO 4217 code; the default currency if none is written"
    )


class DateRange(BaseModel):
    """Normalised period of a DATE entity, both ends inclusive."""

    start: date
    end: date


class Entity(BaseModel):
    """A named entity in the text."""

    text: str = Field(description="The entity as written")
    label: Literal[LABELS] = Field(description="MONEY, DATE, CATEGORY, MERCHANT or ACCOUNT")
    start: int = Field(ge=0, description="Offset of its first character in the text")
    end: int = Field(ge=1, description="Offset after its last character (exclusive)")
    value: MoneyValue | DateRange | date | None = Field(
        None,
        description="MONEY: amount and currency; DATE: an ISO date or a start/end range relative "
        "to reference_date; null for other labels and for dates that cannot be resolved",
    )


class NerPrediction(BaseModel):
    """Entities of one text."""

    entities: list[Entity] = Field(description="In text order")
    model: str = Field("ner", description="Model name")
    model_version: str = Field(description="MLflow registered model version")


class NerEntities(BaseModel):
    """Entities of one text of a batch."""

    entities: list[Entity]


class NerBatchPrediction(BaseModel):
    """Entities of each text, in input order."""

    predictions: list[NerEntities]
    model: str = Field("ner", description="Model name")
    model_version: str = Field(description="MLflow registered model version")
