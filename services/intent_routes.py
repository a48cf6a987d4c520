"""Public intent routes: ``/predict/intent`` and ``/predict/intent/batch``."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from functools import cached_property
from pathlib import Path

import bentoml
import numpy as np

from finbento.intent import MODEL_NAME, IntentConfig
from finbento.settings import get_settings
from services import prediction_logging
from services.args import ARGS, mlflow_version
from services.coalesce import batched_call
from services.intent import MAX_BATCH_SIZE, IntentModel
from services.intent_schemas import (
    IntentAlternative,
    IntentBatchPrediction,
    IntentPrediction,
    Queries,
    Query,
)
from services.prediction_cache import get_cache


class IntentRoutes:
    """Mixin for a public ``@bentoml.service``: intent routes and their model service."""

    intent = bentoml.depends(IntentModel)

    @cached_property
    def intent_config(self) -> IntentConfig:
        """Labels and threshold of the served version, read from its model folder."""
        return IntentConfig.load(Path(bentoml.models.get(ARGS.intent_model).path))

    @cached_property
    def intent_calls(self) -> Callable[[list[str]], Awaitable[Sequence[np.ndarray]]]:
        """Queries -> probability rows (n, k); this worker's concurrent calls merged into one."""
        merge = get_settings().intent_batching
        return batched_call(MODEL_NAME, self.intent.to_async.probabilities, MAX_BATCH_SIZE, merge)

    async def _intents(self, queries: list[str]) -> list[IntentPrediction]:
        started = time.perf_counter()
        version = mlflow_version(ARGS.intent_model)

        async def infer(missing: list[int]) -> list[list[float]]:
            return np.asarray(await self.intent_calls([queries[i] for i in missing])).tolist()

        probabilities = np.asarray(await get_cache().cached(MODEL_NAME, version, queries, infer))
        predictions = [
            IntentPrediction(
                intent=r.intent, confidence=r.confidence, out_of_scope=r.out_of_scope,
                alternatives=[IntentAlternative(intent=i, confidence=c) for i, c in r.alternatives],
                model=MODEL_NAME, model_version=version,
            )
            for r in self.intent_config.decide(probabilities)
        ]  # fmt: skip
        prediction_logging.record(
            MODEL_NAME, version, [{"query": q, "query_chars": len(q)} for q in queries],
            [{"intent": p.intent, "confidence": p.confidence, "out_of_scope": p.out_of_scope}
             for p in predictions], started,
        )  # fmt: skip
        return predictions

    @bentoml.api(route="/predict/intent")
    async def predict_intent(self, query: Query) -> IntentPrediction:
        """The intent of one customer query (1 to 1,000 characters)."""
        (prediction,) = await self._intents([query])
        return prediction

    @bentoml.api(route="/predict/intent/batch")
    async def predict_intent_batch(self, queries: Queries) -> IntentBatchPrediction:
        """Intents of 1 to 256 queries, in input order."""
        return IntentBatchPrediction(predictions=await self._intents(queries))
