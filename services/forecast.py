"""The forecast bundle's public API: monthly spending forecasts."""

import bentoml

from services import http_metrics
from services.spending_routes import SpendingRoutes


@bentoml.service(name="finbento-forecast", workers=1, traffic={"timeout": 30})
class ForecastAPI(SpendingRoutes):
    """Public routes of the forecast models."""


http_metrics.install(ForecastAPI, "forecast")
