"""The plain FastAPI + uvicorn baseline of bench/compare.py: the credit-risk model, nothing else.

Same model files (the BentoML model named by ``FINBENTO_BENCH_MODEL_DIR``), same request and
answer schemas (:class:`~finbento.features.credit_risk.Applicant` in,
:class:`~services.schemas.CreditRiskPrediction` out) and the same scorer as the served Bento, in
the most direct way a FastAPI user would write it: one ``async`` route that validates, scores
in-process and answers. No feature store, prediction log, metrics or cache. Run it as
``uvicorn bench.fastapi_credit_risk:app --workers N``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel

from finbento.credit_risk import CreditRiskScorer
from finbento.features.credit_risk import Applicant, raw_matrix
from services.routes import prediction
from services.schemas import CreditRiskPrediction

SCORER = CreditRiskScorer.load(Path(os.environ["FINBENTO_BENCH_MODEL_DIR"]))
VERSION = os.environ.get("FINBENTO_BENCH_MODEL_VERSION", "0")

app = FastAPI(title="credit-risk (plain FastAPI baseline)")


class CreditRiskRequest(BaseModel):
    """The Bento route's body: one applicant."""

    applicant: Applicant


@app.post("/predict/credit-risk")
async def predict_credit_risk(request: CreditRiskRequest) -> CreditRiskPrediction:
    """Score one applicant in the event loop (an XGBoost row takes well under a millisecond)."""
    return prediction(np.asarray(SCORER.score(raw_matrix([request.applicant]))[0]), VERSION)
