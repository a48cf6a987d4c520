"""``fraud`` and ``anomaly`` model services: score transaction feature rows, batched adaptively.

Both take the full feature matrix (n, 18) built by the public routes from the feature store and
answer one row per transaction. XGBoost and an Isolation Forest score a row in microseconds, so
batching helps mostly under bursts; the caps follow the
intent service's (services/intent.py).
"""

from __future__ import annotations

import bentoml
import numpy as np

from finbento.anomaly import AnomalyScorer
from finbento.fraud import FraudScorer
from finbento.model_integrity import verified_path
from services.args import ARGS
from services.runtime import service_options, tune_gc


class _FraudEndpoint:
    """A fraud model (``model_ref`` set by the service class), one batchable endpoint."""

    model_ref: bentoml.models.BentoModel

    def __init__(self) -> None:
        self.scorer = FraudScorer.load(verified_path(self.model_ref))
        tune_gc()

    @bentoml.api(batchable=True, max_batch_size=512, max_latency_ms=1000)
    def score(self, features: np.ndarray) -> np.ndarray:
        """Feature rows (n, 18) -> (n, 2): fraud probability, decision threshold."""
        p = self.scorer.probability(features)
        return np.column_stack([p, np.full(len(p), self.scorer.threshold)])


@bentoml.service(**service_options("fraud", timeout_s=10))
class FraudModel(_FraudEndpoint):
    """The fraud champion."""

    model_ref = bentoml.models.BentoModel(ARGS.fraud_model)


if ARGS.fraud_challenger_model:  # packaged only when built with a challenger in shadow

    @bentoml.service(**service_options("fraud-challenger", timeout_s=10))
    class FraudChallengerModel(_FraudEndpoint):
        """The fraud challenger, scoring a share of the traffic in shadow (answers unused)."""

        model_ref = bentoml.models.BentoModel(ARGS.fraud_challenger_model)

else:
    FraudChallengerModel = None


@bentoml.service(**service_options("anomaly", timeout_s=10))
class AnomalyModel:
    """The anomaly model, one batchable endpoint."""

    model_ref = bentoml.models.BentoModel(ARGS.anomaly_model)

    def __init__(self) -> None:
        self.scorer = AnomalyScorer.load(verified_path(self.model_ref))
        tune_gc()

    @bentoml.api(batchable=True, max_batch_size=512, max_latency_ms=1000)
    def score(self, features: np.ndarray) -> np.ndarray:
        """Feature rows (n, 18) -> (n, 6): score, threshold, robust z of the 4 features."""
        s = self.scorer.score(features)
        threshold = np.full(len(s), self.scorer.threshold)
        return np.column_stack([s, threshold, self.scorer.robust_z(features)])
