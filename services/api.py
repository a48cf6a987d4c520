"""The all-in-one public API: every public route, for ``bentoml serve`` and small installs."""

import bentoml

from monitoring.api import app as monitoring_app
from services import http_metrics
from services.advisor_routes import AdvisorRoutes
from services.category_routes import CategoryRoutes
from services.intent_routes import IntentRoutes
from services.ner_routes import NerRoutes
from services.prediction_cache import app as cache_app
from services.recommend_routes import RecommendRoutes
from services.routes import CreditRiskRoutes
from services.runtime import service_options
from services.spending_routes import SpendingRoutes
from services.transaction_routes import TransactionRoutes


@bentoml.asgi_app(monitoring_app, path="/monitoring")  # admin drift routes
@bentoml.asgi_app(cache_app, path="/cache")  # admin: POST /cache/clear
@bentoml.service(**service_options("finbento", timeout_s=10, public=True))
class FinBento(
    CreditRiskRoutes,
    TransactionRoutes,
    IntentRoutes,
    NerRoutes,
    CategoryRoutes,
    SpendingRoutes,
    AdvisorRoutes,
    RecommendRoutes,
):
    """All public routes of finbento."""


http_metrics.install(FinBento, "all")
