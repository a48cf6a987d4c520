"""The advisor bundle's public API: grounded financial information through Gemini."""

import bentoml

from services import http_metrics
from services.advisor_routes import AdvisorRoutes
from services.runtime import service_options


@bentoml.service(**service_options("finbento-advisor", timeout_s=60, public=True))
class AdvisorAPI(AdvisorRoutes):
    """Public routes of the advisor."""


http_metrics.install(AdvisorAPI, "advisor")
