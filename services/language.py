"""The language bundle's public API: intents, financial entities and transaction categories."""

import bentoml

from services.intent_routes import IntentRoutes


@bentoml.service(name="finbento-language", workers=1, traffic={"timeout": 10})
class LanguageAPI(IntentRoutes):
    """Public routes of the language models."""
