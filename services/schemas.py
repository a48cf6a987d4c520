"""Request and response schemas of the public routes (the applicant fields live in finbento)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from finbento.features.credit_risk import Applicant

MAX_BATCH = 1000

ApplicantBatch = Annotated[list[Applicant], Field(min_length=1, max_length=MAX_BATCH)]


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
