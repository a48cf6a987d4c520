"""``intent`` model service: Banking77 intent probabilities from ONNX MiniLM, batched adaptively.

A transformer pays per call (session run, padding), so queries are gathered into batches of up
to 64. Inside a batch, queries are sorted by length so padding stays short.
``FINBENTO_INTENT_BATCHING=false`` scores each call alone, for comparison (bench/serving.py).

``max_latency_ms`` (here and in every batched model service) is not a wait target: BentoML's
dispatcher tunes its own wait from observed latency; the cap is where it starts refusing work with
503. A tight cap (10 ms, or 250 ms at concurrency 64 on 2 cores) shed requests, so the caps sit
well inside the request timeout and overload queues instead.
"""

from __future__ import annotations

import bentoml
import numpy as np

from finbento.intent import IntentClassifier
from finbento.model_integrity import verified_path
from finbento.settings import get_settings
from services.args import ARGS
from services.runtime import service_options, tune_gc

#: Most queries in one batch of the intent service.
MAX_BATCH_SIZE = 64


@bentoml.service(**service_options("intent", timeout_s=10))
class IntentModel:
    """The intent model, one batchable endpoint."""

    model_ref = bentoml.models.BentoModel(ARGS.intent_model)

    def __init__(self) -> None:
        settings = get_settings()
        self.classifier = IntentClassifier(
            verified_path(self.model_ref), settings.intent_threads, settings.intent_batch_threads
        )
        tune_gc()

    @bentoml.api(
        batchable=get_settings().intent_batching, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=2000
    )
    def probabilities(self, queries: list[str]) -> np.ndarray:
        """Queries (n,) -> softmax over the intents, float32 (n, 77), in input order."""
        return self.classifier.probabilities(queries)
