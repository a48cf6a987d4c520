"""``ner`` model service: financial entities with normalised values, batched adaptively.

A spaCy pipeline tags a short message in about a millisecond, and ``nlp.pipe`` tags a batch
faster than one call per text, so concurrent requests are batched here. Amounts written without a
currency take ``settings.ner_default_currency``; ambiguous dates resolve by
``settings.ner_date_preference`` (both read at start-up).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import bentoml

from finbento.model_integrity import verified_path
from finbento.ner import EntityExtractor
from finbento.settings import get_settings
from services.args import ARGS
from services.ner_schemas import NerQuery
from services.runtime import service_options, tune_gc

#: Most items in one batch of the ner service.
MAX_BATCH_SIZE = 256


@bentoml.service(**service_options("ner", timeout_s=10))
class NerModel:
    """The ner model, one batchable endpoint."""

    model_ref = bentoml.models.BentoModel(ARGS.ner_model)

    def __init__(self) -> None:
        s = get_settings()
        self.extractor = EntityExtractor.load(
            verified_path(self.model_ref), s.ner_default_currency, s.ner_date_preference
        )
        self.extractor.extract(["paid Rs. 500 yesterday"], date.today())  # load dateparser now
        tune_gc()

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=1000)
    def extract(self, queries: list[NerQuery]) -> list[list[dict[str, Any]]]:
        """Texts with their reference dates (n) -> n lists of entities.

        Each entity is ``{"text", "label", "start", "end", "value"?}``, see
        finbento.ner.EntityExtractor.extract.
        """
        return self.extractor.extract(
            [q.text for q in queries], [q.reference_date for q in queries]
        )
