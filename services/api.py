"""The all-in-one public API: every public route, for ``bentoml serve`` and small installs."""

import bentoml

from services.routes import CreditRiskRoutes
from services.transaction_routes import TransactionRoutes


@bentoml.service(name="finbento", workers=1, traffic={"timeout": 10})
class FinBento(CreditRiskRoutes, TransactionRoutes):
    """All public routes of finbento."""
