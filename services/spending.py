"""``spending`` model service: fits a user's monthly series at request time and forecasts them.

The BentoML model holds the global configuration (holidays, priors, method rules), not fitted
per-user objects (finbento/spending.py). A forecast fits a few small models (Prophet or a
fallback per category), which is CPU work of a few hundred milliseconds, so it runs in a worker
thread and is not batched: there is nothing to share between two users' fits.
"""

from __future__ import annotations

import asyncio

import bentoml
import pandas as pd

from finbento.model_integrity import verified_path
from finbento.spending import SpendingForecaster
from services.args import ARGS
from services.runtime import service_options, tune_gc


@bentoml.service(**service_options("spending", timeout_s=30))
class SpendingModel:
    """The spending forecaster, one endpoint."""

    model_ref = bentoml.models.BentoModel(ARGS.spending_model)

    def __init__(self) -> None:
        self.forecaster = SpendingForecaster.load(verified_path(self.model_ref))
        tune_gc()

    @bentoml.api
    async def forecast(self, history: list[dict], months: int, category: str | None = None) -> dict:
        """History rows (``date`` ISO, ``amount`` INR, ``category``) -> forecast rows and methods.

        Returns:
            ``{"forecast": [{"month", "category", "yhat", "yhat_lower", "yhat_upper"}],
            "method": {category: method}, "interval_width": float}``.
        """
        frame = pd.DataFrame(history)
        frame["date"] = pd.to_datetime(frame["date"])
        # The API counts spending as positive; the model's log convention is money out < 0.
        # A row number keeps two identical purchases apart (monthly_series drops duplicates).
        frame = frame.assign(amount=-frame["amount"].astype(float), row=range(len(frame)))
        result = await asyncio.to_thread(self.forecaster.forecast, frame, months, category)
        return {"forecast": result.rows, "method": result.methods,
                "interval_width": self.forecaster.config.interval_width}  # fmt: skip
