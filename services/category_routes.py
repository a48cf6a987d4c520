"""Public categorizer routes: ``POST /predict/category`` and ``POST /predict/category/batch``.

One transaction is ``{"description": str, "amount": float}`` (signed, negative = money out); a
batch is ``{"transactions": [...]}`` (1 to 1,000), answered in input order. Validation
(services/category_schemas.py) happens in pydantic before any scoring and answers 400 with the
field's location and the rule broken (422 for an empty or oversized batch).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from functools import cached_property

import bentoml

from finbento.categorizer import MODEL_NAME
from services import prediction_logging
from services.args import ARGS, mlflow_version
from services.categorizer import MAX_BATCH_SIZE, CategorizerModel
from services.category_schemas import (
    Amount,
    CategoryBatch,
    CategoryBatchPrediction,
    CategoryPrediction,
    CategoryScores,
    CategoryTransaction,
    Description,
)
from services.coalesce import batched_call
from services.prediction_cache import get_cache


class CategoryRoutes:
    """Mixin for a public ``@bentoml.service``: the categorizer routes and their model service."""

    categorizer = bentoml.depends(CategorizerModel)

    @cached_property
    def categorizer_calls(self) -> Callable[[list[CategoryTransaction]], Awaitable[Sequence]]:
        """Transactions -> category scores; this worker's concurrent calls merged into one."""
        return batched_call(MODEL_NAME, self.categorizer.to_async.categorize, MAX_BATCH_SIZE)

    async def _categorize(self, items: list[CategoryTransaction]) -> list[CategoryPrediction]:
        started = time.perf_counter()
        version = mlflow_version(ARGS.categorizer_model)

        async def categorize(missing: list[int]) -> list[dict]:
            scores = await self.categorizer_calls([items[i] for i in missing])
            return [CategoryScores.model_validate(s).model_dump() for s in scores]

        scores = await get_cache().cached(MODEL_NAME, version,
                                          [i.model_dump() for i in items], categorize)  # fmt: skip
        predictions = [
            CategoryPrediction(**CategoryScores.model_validate(s).model_dump(), model=MODEL_NAME,
                               model_version=version)
            for s in scores
        ]  # fmt: skip
        prediction_logging.record(
            MODEL_NAME, version, [{"text": i.description, "amount": i.amount} for i in items],
            [{"category": p.category, "confidence": p.confidence} for p in predictions], started,
        )  # fmt: skip
        return predictions

    @bentoml.api(route="/predict/category", input_spec=CategoryTransaction)
    async def predict_category(
        self, description: Description, amount: Amount
    ) -> CategoryPrediction:
        """Spending category of one transaction, its confidence and the top 3 categories."""
        (prediction,) = await self._categorize(
            [CategoryTransaction(description=description, amount=amount)]
        )
        return prediction

    @bentoml.api(route="/predict/category/batch")
    async def predict_category_batch(self, transactions: CategoryBatch) -> CategoryBatchPrediction:
        """Spending categories of 1 to 1,000 transactions, in input order."""
        return CategoryBatchPrediction(predictions=await self._categorize(transactions))
