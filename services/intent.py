"""``intent`` model service: Banking77 intent probabilities from ONNX MiniLM, batched adaptively.

A transformer pays per call (session run, padding), so queries are gathered into batches of up
to 64 (``max_latency_ms`` is where the dispatcher starts shedding, not a wait target; see
services/credit_risk.py). Inside a batch, queries are sorted by length so padding stays short.
``FINBENTO_INTENT_BATCHING=false`` scores each call alone, for comparison (bench/intent.py).
"""

from __future__ import annotations

from pathlib import Path

import bentoml
import numpy as np

from finbento.intent import IntentClassifier
from finbento.settings import get_settings
from services.args import ARGS
from services.runtime import tune_gc


@bentoml.service(name="intent", workers=1, traffic={"timeout": 10})
class IntentModel:
    """The intent model, one batchable endpoint."""

    model_ref = bentoml.models.BentoModel(ARGS.intent_model)

    def __init__(self) -> None:
        self.classifier = IntentClassifier(
            Path(self.model_ref.path), threads=get_settings().intent_threads
        )
        tune_gc()

    @bentoml.api(batchable=get_settings().intent_batching, max_batch_size=64, max_latency_ms=2000)
    def probabilities(self, queries: list[str]) -> np.ndarray:
        """Queries (n,) -> softmax over the intents, float32 (n, 77), in input order."""
        return self.classifier.probabilities(queries)
