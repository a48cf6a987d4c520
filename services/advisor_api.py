"""The advisor bundle's public API: grounded financial information through Gemini."""

import bentoml

from services import http_metrics
from services.advisor_routes import AdvisorRoutes


@bentoml.service(name="finbento-advisor", workers=1, traffic={"timeout": 60})
class AdvisorAPI(AdvisorRoutes):
    """Public routes of the advisor."""


http_metrics.install(AdvisorAPI, "advisor")
