"""Public credit-risk routes, shared by the all-in-one and the risk Bento.

``POST /predict/credit-risk`` scores one applicant, ``POST /predict/credit-risk/batch`` up to
1,000 in input order. Validation (types, ranges, missing or unknown fields, NaN) happens in
pydantic before any scoring and answers 400 with the field's location and the rule broken; an
empty or oversized batch answers 422 (``applicants: at most 1000 items, got 1001``).
"""

from __future__ import annotations

import asyncio
import time
from functools import cached_property
from typing import Annotated

import bentoml
import numpy as np
from pydantic import Field

from finbento.credit_risk import MODEL_NAME, CreditRiskScorer, risk_band, risk_score, top_reasons
from finbento.features.credit_risk import Applicant, raw_matrix
from finbento.model_integrity import verified_path
from services import prediction_logging
from services.args import ARGS, mlflow_version
from services.coalesce import Coalescer
from services.prediction_cache import get_cache
from services.profiles import ProfileWriter
from services.runtime import tune_gc
from services.schemas import (
    _ID,
    MAX_BATCH,
    ApplicantBatch,
    CreditRiskBatchPrediction,
    CreditRiskPrediction,
    Reason,
)


def prediction(row: np.ndarray, version: str) -> CreditRiskPrediction:
    """The answer for one scored row (shape (30,): probability, then 29 contributions)."""
    score = risk_score(row[0])
    return CreditRiskPrediction(
        default_probability=round(float(row[0]), 6),
        risk_score=score,
        risk_band=risk_band(score),
        reasons=[Reason(feature=f, contribution=round(c, 6)) for f, c in top_reasons(row[1:])],
        model=MODEL_NAME,
        model_version=version,
    )


#: Batches up to this many rows are scored in the event loop (~0.5 ms a call plus ~0.25 ms a row
#: for the SHAP contributions); larger ones in a worker thread (XGBoost releases the GIL), so a
#: 1,000-row batch (~200 ms) does not stall the other requests.
INLINE_ROWS = 8


class CreditRiskRoutes(ProfileWriter):
    """Mixin for a public ``@bentoml.service``: the credit-risk routes, scored in the API worker.

    No model-service hop: one XGBoost row costs far less than the extra HTTP call and batch
    dispatch of a dependent service, so the public worker loads the model itself and scores its
    concurrent requests together (:attr:`credit_risk_calls`; measured in bench/compare.py, see
    README, Serving and performance).
    """

    credit_risk_model = bentoml.models.BentoModel(ARGS.credit_risk_model)

    def __init__(self) -> None:
        self.credit_risk = CreditRiskScorer.load(verified_path(self.credit_risk_model))
        tune_gc()

    @cached_property
    def credit_risk_calls(self) -> Coalescer:
        """Raw rows (23,) -> scored rows (30,): this worker's concurrent requests scored together.

        One XGBoost call costs ~0.45 ms plus ~0.2 ms a row (the ``DMatrix``, the probability and
        the SHAP contributions), so rows of requests that arrive while a call runs are scored in
        the next call (0.64 ms a row alone, 0.23 in eights). Calls of up to :data:`INLINE_ROWS`
        rows run in the event loop, larger ones in a thread.
        """

        async def score(rows: list[np.ndarray]) -> np.ndarray:
            matrix = np.vstack(rows)
            if len(rows) <= INLINE_ROWS:
                return self.credit_risk.score(matrix)
            return await asyncio.to_thread(self.credit_risk.score, matrix)

        return Coalescer(score, max_items=MAX_BATCH)

    @property
    def credit_risk_version(self) -> str:
        """MLflow registered version of the packaged model (from its BentoML labels)."""
        return mlflow_version(ARGS.credit_risk_model)

    async def _score(self, applicants: list[Applicant]) -> list[CreditRiskPrediction]:
        started = time.perf_counter()

        async def score(missing: list[int]) -> list[list[float]]:
            return [row.tolist() for row in await self.credit_risk_calls(
                list(raw_matrix([applicants[i] for i in missing])))]  # fmt: skip

        scores = await get_cache().cached(MODEL_NAME, self.credit_risk_version,
                                          [a.model_dump() for a in applicants], score)  # fmt: skip
        predictions = [prediction(np.asarray(row), self.credit_risk_version) for row in scores]
        prediction_logging.record(
            MODEL_NAME, self.credit_risk_version, [a.model_dump() for a in applicants],
            [p.model_dump(include={"default_probability", "risk_score", "risk_band"})
             for p in predictions], started,
        )  # fmt: skip
        return predictions

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
