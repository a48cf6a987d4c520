"""The language bundle's public API: intents, financial entities and transaction categories."""

import bentoml

from services import http_metrics
from services.category_routes import CategoryRoutes
from services.intent_routes import IntentRoutes
from services.ner_routes import NerRoutes
from services.prediction_cache import app as cache_app
from services.runtime import service_options


@bentoml.asgi_app(cache_app, path="/cache")  # admin: POST /cache/clear
@bentoml.service(**service_options("finbento-language", timeout_s=10, public=True))
class LanguageAPI(IntentRoutes, NerRoutes, CategoryRoutes):
    """Public routes of the language models."""


http_metrics.install(LanguageAPI, "language")
