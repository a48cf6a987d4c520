"""``categorizer`` model service: spending category of transactions, batched adaptively.

Takes validated transactions (description, signed amount) and answers, per transaction, the most
likely category of the app's taxonomy, its probability and the top 3 categories. The TF-IDF +
logistic-regression pipeline scores a row in well under a millisecond, so batching pays mostly
under bursts; the caps follow
the intent service's (services/intent.py).
"""

from __future__ import annotations

import bentoml

from finbento.categorizer import CategoryClassifier
from finbento.model_integrity import verified_path
from services.args import ARGS
from services.category_schemas import CategoryAlternative, CategoryScores, CategoryTransaction
from services.runtime import service_options, tune_gc

#: Most items in one batch of the categorizer service.
MAX_BATCH_SIZE = 512


@bentoml.service(**service_options("categorizer", timeout_s=10))
class CategorizerModel:
    """The categorizer model, one batchable endpoint."""

    model_ref = bentoml.models.BentoModel(ARGS.categorizer_model)

    def __init__(self) -> None:
        self.classifier = CategoryClassifier.load(verified_path(self.model_ref))
        tune_gc()

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=1000)
    def categorize(self, transactions: list[CategoryTransaction]) -> list[CategoryScores]:
        """Score n transactions; n category scores come back in input order."""
        predictions = self.classifier.predict(
            [t.description for t in transactions], [t.amount for t in transactions]
        )
        return [
            CategoryScores(
                category=p.category, confidence=round(p.confidence, 6),
                alternatives=[CategoryAlternative(category=c, confidence=round(q, 6))
                              for c, q in p.alternatives],
            )
            for p in predictions
        ]  # fmt: skip
