"""The language bundle's public API: intents, financial entities and transaction categories."""

import bentoml

from services import http_metrics
from services.category_routes import CategoryRoutes
from services.intent_routes import IntentRoutes
from services.ner_routes import NerRoutes
from services.prediction_cache import app as cache_app


@bentoml.asgi_app(cache_app, path="/cache")  # admin: POST /cache/clear
@bentoml.service(name="finbento-language", workers=1, traffic={"timeout": 10})
class LanguageAPI(IntentRoutes, NerRoutes, CategoryRoutes):
    """Public routes of the language models."""


http_metrics.install(LanguageAPI, "language")
