"""Request and response schemas of the categorizer routes (``/predict/category``, ``/batch``).

Bad input never reaches the model: a blank description (after stripping), one over
:data:`MAX_DESCRIPTION_CHARS` characters, a missing, non-numeric, NaN or infinite amount and
unknown fields answer 400 naming the field and the rule; an empty or oversized batch answers
422 (``transactions: at most 1000 items, got 1001``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from finbento.categorizer import MAX_DESCRIPTION_CHARS, MODEL_NAME
from services.schemas import MAX_BATCH, ItemCount, no_control_chars

#: Largest |amount| accepted, in the account's currency.
MAX_ABS_AMOUNT = 1e9

Description = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_DESCRIPTION_CHARS),
    AfterValidator(no_control_chars),
    Field(
        description="Transaction description as on the statement or as the user typed it "
        f"(1-{MAX_DESCRIPTION_CHARS:,} characters after trimming)",
        examples=["POS Purchase Woolworths Sandton * 12 Oct"],
    ),
]
Amount = Annotated[
    float,
    Field(
        strict=True, allow_inf_nan=False, ge=-MAX_ABS_AMOUNT, le=MAX_ABS_AMOUNT,
        description="Signed amount in the account's currency: negative = money out, "
        "positive = money in",
        examples=[-450.0],
    ),
]  # fmt: skip


class CategoryTransaction(BaseModel):
    """A transaction to categorise: its description and signed amount."""

    model_config = ConfigDict(extra="forbid")

    description: Description
    amount: Amount


CategoryBatch = Annotated[list[CategoryTransaction], ItemCount(1, MAX_BATCH)]


class CategoryAlternative(BaseModel):
    """A likely category and its probability."""

    category: str = Field(description="A category of the app's taxonomy")
    confidence: float = Field(ge=0, le=1, description="Its probability")


class CategoryScores(BaseModel):
    """What the model service answers for one transaction (the public routes add the model)."""

    category: str = Field(description="The most likely category of the app's taxonomy")
    confidence: float = Field(ge=0, le=1, description="Its probability (class-balanced model)")
    alternatives: list[CategoryAlternative] = Field(
        description="Top 3 categories, most likely first (the first is `category`)"
    )


class CategoryPrediction(CategoryScores):
    """Category of one transaction, and the model that gave it."""

    model: str = Field(MODEL_NAME, description="Model name")
    model_version: str = Field(description="MLflow registered model version")


class CategoryBatchPrediction(BaseModel):
    """Categories of a batch of transactions, in input order."""

    predictions: list[CategoryPrediction]
