"""``credit-risk`` model service: scores raw applicant rows with XGBoost, batched adaptively.

Batching: ``max_batch_size=256`` rows and ``max_latency_ms=250``. The latency cap is where
BentoML's dispatcher starts refusing work with 503, not a wait target (the dispatcher tunes its own
wait), so it sits well above a scoring call (~1 ms for 256 rows) plus a queue under load; a tight
cap such as 10 ms answered 503 under load here. ``FINBENTO_CREDIT_RISK_BATCHING=false`` turns
batching off for comparison (bench/serving.py).
"""

from __future__ import annotations

from pathlib import Path

import bentoml
import numpy as np

from finbento.credit_risk import CreditRiskScorer
from finbento.settings import get_settings
from services.args import ARGS


@bentoml.service(name="credit-risk", workers=1, traffic={"timeout": 10})
class CreditRiskModel:
    """One model, one batchable endpoint."""

    model_ref = bentoml.models.BentoModel(ARGS.credit_risk_model)

    def __init__(self) -> None:
        self.scorer = CreditRiskScorer.load(Path(self.model_ref.path))

    @bentoml.api(
        batchable=get_settings().credit_risk_batching, max_batch_size=256, max_latency_ms=250
    )
    def score(self, applicants: np.ndarray) -> np.ndarray:
        """Score raw rows of shape (n, 23) -> (n, 30): probability, then 29 contributions."""
        return self.scorer.score(applicants)
