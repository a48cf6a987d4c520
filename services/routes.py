"""Public credit-risk routes, shared by the all-in-one and the risk Bento.

``POST /predict/credit-risk`` scores one applicant, ``POST /predict/credit-risk/batch`` up to
1,000 in input order. Validation (types, ranges, missing or unknown fields, NaN, batch size) happens
in pydantic before any scoring and answers 400 with the field's location and the rule broken.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import bentoml
import numpy as np
from pydantic import Field

from finbento.credit_risk import MODEL_NAME, risk_band, risk_score, top_reasons
from finbento.features.credit_risk import Applicant, raw_matrix
from services import prediction_logging
from services.args import ARGS, mlflow_version
from services.credit_risk import CreditRiskModel
from services.prediction_cache import get_cache
from services.profiles import ProfileWriter
from services.runtime import tune_gc
from services.schemas import (
    _ID,
    ApplicantBatch,
    CreditRiskBatchPrediction,
    CreditRiskPrediction,
    Reason,
)


class CreditRiskRoutes(ProfileWriter):
    """Mixin for a public ``@bentoml.service``: the credit-risk routes and their model service."""

    credit_risk = bentoml.depends(CreditRiskModel)

    def __init__(self) -> None:
        tune_gc()

    @property
    def credit_risk_version(self) -> str:
        """MLflow registered version of the packaged model (from its BentoML labels)."""
        return mlflow_version(ARGS.credit_risk_model)

    async def _score(self, applicants: list[Applicant]) -> list[CreditRiskPrediction]:
        started = time.perf_counter()

        async def score(missing: list[int]) -> list[list[float]]:
            rows = raw_matrix([applicants[i] for i in missing])
            return np.asarray(await self.credit_risk.to_async.score(rows)).tolist()

        scores = await get_cache().cached(MODEL_NAME, self.credit_risk_version,
                                          [a.model_dump() for a in applicants], score)  # fmt: skip
        predictions = [self._prediction(np.asarray(row)) for row in scores]
        prediction_logging.record(
            MODEL_NAME, self.credit_risk_version, [a.model_dump() for a in applicants],
            [p.model_dump(include={"default_probability", "risk_score", "risk_band"})
             for p in predictions], started,
        )  # fmt: skip
        return predictions

    def _prediction(self, row: np.ndarray) -> CreditRiskPrediction:
        score = risk_score(row[0])
        return CreditRiskPrediction(
            default_probability=round(float(row[0]), 6),
            risk_score=score,
            risk_band=risk_band(score),
            reasons=[Reason(feature=f, contribution=round(c, 6)) for f, c in top_reasons(row[1:])],
            model=MODEL_NAME,
            model_version=self.credit_risk_version,
        )

    @bentoml.api(route="/predict/credit-risk")
    async def predict_credit_risk(
        self,
        applicant: Applicant,
        user_id: Annotated[
            str | None,
            Field(
                pattern=_ID,
                description="Optional: the user, whose band the advisor may then mention",
            ),
        ] = None,
    ) -> CreditRiskPrediction:
        """Score one applicant: probability of default, 0-100 score, band and top 3 reasons."""
        (prediction,) = await self._score([applicant])
        if user_id is not None:
            fields = {"risk_band": prediction.risk_band, "risk_score": prediction.risk_score}
            await asyncio.to_thread(self.remember, user_id, fields, "risk")
        return prediction

    @bentoml.api(route="/predict/credit-risk/batch")
    async def predict_credit_risk_batch(
        self, applicants: ApplicantBatch
    ) -> CreditRiskBatchPrediction:
        """Score 1 to 1,000 applicants; predictions come back in input order."""
        return CreditRiskBatchPrediction(predictions=await self._score(applicants))
