"""Public spending route: ``/predict/spending``.

The history comes from the request, else from the user's monthly totals in Redis
(finbento/spending_store.py); with neither, 404. A sent history is stored as the user's monthly
totals (unless ``"ingest": false``), so later requests can leave it out. Answers are cached in
Redis under the model version, the history and the request (``FINBENTO_SPENDING_CACHE_TTL_S``).
When Redis is down the route still answers requests that carry their history (uncached, not
stored, counted as degraded) and answers 503 with ``Retry-After`` to those that need the
stored history.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import cached_property

import bentoml
import pandas as pd
import redis
from starlette.responses import JSONResponse

from finbento.settings import get_settings
from finbento.spending import MODEL_NAME, TOTAL
from finbento.spending_store import SpendingStore
from monitoring.metrics import DEGRADED_RESPONSES
from services import dependency, prediction_logging
from services.args import ARGS, mlflow_version
from services.profiles import ProfileWriter
from services.spending import SpendingModel
from services.spending_schemas import SpendingPrediction, SpendingRequest

log = logging.getLogger(__name__)


class SpendingRoutes(ProfileWriter):
    """Mixin for a public ``@bentoml.service``: the spending route and its model service."""

    spending = bentoml.depends(SpendingModel)

    @cached_property
    def spending_store(self) -> SpendingStore:
        """Users' monthly totals and the forecast cache (connects lazily)."""
        s = get_settings()
        return SpendingStore.from_url(s.redis_url, s.redis_prefix)

    async def _history(self, request: SpendingRequest) -> pd.DataFrame | JSONResponse:
        """The request's history, else the user's stored monthly totals.

        Returns:
            the history (``date``, ``amount`` INR spent, ``category``), or the error to answer:
            404 when neither the request nor the store has one, 503 (``Retry-After``) when it
            must come from the store and Redis is down.
        """
        if request.history is not None:
            return pd.DataFrame([item.model_dump() for item in request.history])
        try:
            stored = await asyncio.to_thread(self.spending_store.history, request.user_id)
        except redis.exceptions.RedisError as exc:
            log.warning("spending store unavailable: %s", exc)
            return JSONResponse(
                {"error": "spending store unavailable: send `history` in the request or retry"},
                status_code=503, headers={"Retry-After": "5"},
            )  # fmt: skip
        if stored.empty:
            return JSONResponse(
                {"error": f"no spending history for user_id {request.user_id!r}: send "
                          "`history` or load it first (`finbento features load-spending`)"},
                status_code=404,
            )  # fmt: skip
        return stored

    @bentoml.api(route="/predict/spending", input_spec=SpendingRequest)
    async def predict_spending(
        self,
        user_id: str,
        months: int,
        category: str | None = None,
        history: list | None = None,
        ingest: bool = True,
    ) -> SpendingPrediction:
        """Monthly spending forecast, 1-12 months ahead, per category and in total."""
        started = time.perf_counter()
        request = SpendingRequest(user_id=user_id, months=months, category=category,
                                  history=history, ingest=ingest)  # fmt: skip
        version = mlflow_version(ARGS.spending_model)
        history = await self._history(request)
        if isinstance(history, JSONResponse):
            return history
        if request.history is not None and request.ingest:
            try:
                await asyncio.to_thread(self.spending_store.set_history, request.user_id, history)
            except redis.exceptions.RedisError as exc:
                log.warning("spending history not stored: %s", exc)
                DEGRADED_RESPONSES.labels(MODEL_NAME, "store_unavailable").inc()
        request_fields = {"months": request.months, "category": request.category}
        digest = SpendingStore.request_digest(version, history, request_fields)
        try:
            hit = await asyncio.to_thread(self.spending_store.cached, digest)
        except redis.exceptions.RedisError:
            hit = None
            DEGRADED_RESPONSES.labels(MODEL_NAME, "cache_unavailable").inc()
        if hit is not None:
            _log(version, request, history, hit, True, started)
            return SpendingPrediction(**hit, user_id=request.user_id, cached=True,
                                    model=MODEL_NAME, model_version=version)  # fmt: skip
        history = history.assign(date=history["date"].astype(str))
        records, forecast = history.to_dict("records"), self.spending.to_async.forecast
        answer = await dependency.call(
            MODEL_NAME, forecast, history=records, months=request.months, category=request.category
        )
        try:
            ttl = get_settings().spending_cache_ttl_s
            await asyncio.to_thread(self.spending_store.cache, digest, answer, ttl)
        except redis.exceptions.RedisError:
            DEGRADED_RESPONSES.labels(MODEL_NAME, "cache_unavailable").inc()
        total = next((row for row in answer["forecast"] if row["category"] == TOTAL), None)
        if total is not None:  # the advisor may mention the user's next month
            fields = {
                "forecast_month": total["month"],
                "forecast_total": total["yhat"],
                "forecast_lower": total["yhat_lower"],
                "forecast_upper": total["yhat_upper"],
            }
            await asyncio.to_thread(self.remember, request.user_id, fields, "forecast")
        _log(version, request, history, answer, False, started)
        return SpendingPrediction(**answer, user_id=request.user_id, cached=False,
                                model=MODEL_NAME, model_version=version)  # fmt: skip


def _log(version: str, request: SpendingRequest, history: pd.DataFrame, answer: dict,
         cached: bool, started: float) -> None:  # fmt: skip
    """Log the request's shape (months, history size) and the total's first forecast month."""
    total = next((r for r in answer["forecast"] if r["category"] == TOTAL), None)
    inputs = {"months": request.months, "history_rows": len(history),
              "history_months": int(pd.to_datetime(history["date"]).dt.to_period("M").nunique()),
              "categories": int(history["category"].nunique()),
              "sent_history": request.history is not None}  # fmt: skip
    prediction = {"total_yhat": total["yhat"] if total else None, "cached": cached}
    prediction_logging.record(MODEL_NAME, version, [inputs], [prediction], started)
