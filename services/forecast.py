"""The forecast bundle's public API: monthly spending forecasts."""

import bentoml

from services import http_metrics
from services.runtime import service_options
from services.spending_routes import SpendingRoutes


@bentoml.service(**service_options("finbento-forecast", timeout_s=30, public=True))
class ForecastAPI(SpendingRoutes):
    """Public routes of the forecast models."""


http_metrics.install(ForecastAPI, "forecast")
