"""The advisor bundle's public API: grounded financial information through Gemini."""

import bentoml

from services.advisor_routes import AdvisorRoutes


@bentoml.service(name="finbento-advisor", workers=1, traffic={"timeout": 60})
class AdvisorAPI(AdvisorRoutes):
    """Public routes of the advisor."""
