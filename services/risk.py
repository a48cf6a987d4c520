"""The risk bundle's public API (credit risk now; fraud and anomaly join it later)."""

import bentoml

from services.routes import CreditRiskRoutes


@bentoml.service(name="finbento-risk", workers=1, traffic={"timeout": 10})
class RiskAPI(CreditRiskRoutes):
    """Public routes of the risk models."""
