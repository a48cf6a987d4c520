"""The risk bundle's public API: credit risk, card fraud and transaction anomalies."""

import bentoml

from services import http_metrics
from services.prediction_cache import app as cache_app
from services.routes import CreditRiskRoutes
from services.runtime import service_options
from services.transaction_routes import TransactionRoutes


@bentoml.asgi_app(cache_app, path="/cache")  # admin: POST /cache/clear
@bentoml.service(**service_options("finbento-risk", timeout_s=10, public=True))
class RiskAPI(CreditRiskRoutes, TransactionRoutes):
    """Public routes of the risk models."""


http_metrics.install(RiskAPI, "risk")
