"""Request and response schemas of the intent routes."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from services.schemas import ItemCount, no_control_chars

#: Longest query accepted, in characters (Banking77 queries are under 450; the model reads the
#: first 64 tokens anyway).
MAX_QUERY_CHARS = 1000
MAX_QUERIES = 256

Query = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_QUERY_CHARS),
    AfterValidator(no_control_chars),
]
Queries = Annotated[list[Query], ItemCount(1, MAX_QUERIES)]


class IntentAlternative(BaseModel):
    """One of the most likely intents."""

    intent: str
    confidence: float = Field(ge=0, le=1, description="Softmax probability")


class IntentPrediction(BaseModel):
    """The intent of one query."""

    intent: str = Field(description="Most likely Banking77 intent")
    confidence: float = Field(ge=0, le=1, description="Its softmax probability")
    alternatives: list[IntentAlternative] = Field(description="Top 3 intents, most likely first")
    out_of_scope: bool = Field(description="confidence below the model's out-of-scope threshold")
    model: str = "intent"
    model_version: str = Field(description="MLflow registered model version")


class IntentBatchPrediction(BaseModel):
    """Intents of a batch of queries, in input order."""

    predictions: list[IntentPrediction]
