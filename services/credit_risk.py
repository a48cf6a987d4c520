"""``credit-risk`` model service: scores raw applicant rows with XGBoost, batched adaptively.

Batching: ``max_batch_size=256`` rows, ``max_latency_ms=1000``. The latency cap is not a wait
target (BentoML's dispatcher tunes its own wait from observed latency); it is where the dispatcher
starts refusing work with 503. A tight cap (10 ms, or 250 ms at concurrency 64 on 2 cores) shed
requests here, so the cap sits well inside the 10 s request timeout and overload queues instead.
``FINBENTO_CREDIT_RISK_BATCHING=false`` turns batching off for comparison (bench/serving.py).
"""

from __future__ import annotations

from pathlib import Path

import bentoml
import numpy as np

from finbento.credit_risk import CreditRiskScorer
from finbento.settings import get_settings
from services.args import ARGS
from services.runtime import tune_gc


@bentoml.service(name="credit-risk", workers=1, traffic={"timeout": 10})
class CreditRiskModel:
    """One model, one batchable endpoint."""

    model_ref = bentoml.models.BentoModel(ARGS.credit_risk_model)

    def __init__(self) -> None:
        self.scorer = CreditRiskScorer.load(Path(self.model_ref.path))
        tune_gc()

    @bentoml.api(
        batchable=get_settings().credit_risk_batching, max_batch_size=256, max_latency_ms=1000
    )
    def score(self, applicants: np.ndarray) -> np.ndarray:
        """Score raw rows of shape (n, 23) -> (n, 30): probability, then 29 contributions."""
        return self.scorer.score(applicants)
