"""Public ``ner`` routes: entities (MONEY, DATE, CATEGORY, MERCHANT, ACCOUNT) of users' messages.

``POST /predict/ner`` takes ``{"text", "reference_date"?}``, ``POST /predict/ner/batch`` takes
``{"texts": [...], "reference_date"?}``; relative dates ("yesterday", "last month") resolve
against ``reference_date`` (default: today on the server). Bad input (empty or blank text, a text
over 2,000 characters, a malformed date) answers 400 naming the field; an empty or oversized batch
(over 1,000 texts or 100,000 characters in all) answers 422.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from functools import cached_property

import bentoml

from finbento.ner import MODEL_NAME
from services import prediction_logging
from services.args import ARGS, mlflow_version
from services.coalesce import batched_call
from services.ner import MAX_BATCH_SIZE, NerModel
from services.ner_schemas import (
    Entity,
    NerBatchPrediction,
    NerEntities,
    NerPrediction,
    NerQuery,
    NerText,
    NerTexts,
    ReferenceDate,
)


class NerRoutes:
    """Mixin for a public ``@bentoml.service``: the ner routes and their model service."""

    ner = bentoml.depends(NerModel)

    @cached_property
    def ner_calls(self) -> Callable[[list[NerQuery]], Awaitable[Sequence[list[dict]]]]:
        """Texts with dates -> entity lists; this worker's concurrent calls merged into one."""
        return batched_call(MODEL_NAME, self.ner.to_async.extract, MAX_BATCH_SIZE)

    async def _entities(self, texts: list[str], reference_date: date | None) -> list[list[Entity]]:
        started = time.perf_counter()
        ref = reference_date or date.today()
        queries = [NerQuery(text=t, reference_date=ref) for t in texts]
        out = await self.ner_calls(queries)
        prediction_logging.record(
            MODEL_NAME, mlflow_version(ARGS.ner_model),
            [{"text": t, "text_chars": len(t)} for t in texts],
            [{"entities": len(e), "labels": ",".join(sorted({x["label"] for x in e}))}
             for e in out],
            started,
        )  # fmt: skip
        return [[Entity.model_validate(e) for e in entities] for entities in out]

    @bentoml.api(route="/predict/ner")
    async def predict_ner(
        self, text: NerText, reference_date: ReferenceDate | None = None
    ) -> NerPrediction:
        """Entities of one message, with amounts and dates normalised."""
        (entities,) = await self._entities([text], reference_date)
        return NerPrediction(entities=entities, model=MODEL_NAME,
                             model_version=mlflow_version(ARGS.ner_model))  # fmt: skip

    @bentoml.api(route="/predict/ner/batch")
    async def predict_ner_batch(
        self, texts: NerTexts, reference_date: ReferenceDate | None = None
    ) -> NerBatchPrediction:
        """Entities of 1 to 1,000 messages (one reference date for all), in input order."""
        out = await self._entities(texts, reference_date)
        return NerBatchPrediction(
            predictions=[NerEntities(entities=e) for e in out],
            model=MODEL_NAME,
            model_version=mlflow_version(ARGS.ner_model),
        )
