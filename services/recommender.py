"""``recommender`` model service: next products to offer, batched adaptively.

Takes checked queries (held product codes, optional profile, k) and answers each with its
recommendations (finbento/recommender.py). A batch costs one (n x 24) @ (24 x 24) product, one
propensity call for the profiles in it and the ranking, so batching pays mostly under bursts;
the caps follow the categorizer service.
"""

from __future__ import annotations

import bentoml
from threadpoolctl import threadpool_limits

from finbento.model_integrity import verified_path
from finbento.recommender import Recommender
from services.args import ARGS
from services.recommend_schemas import RecommendedProduct, RecommendQuery, RecommendScores
from services.runtime import service_options, tune_gc


@bentoml.service(**service_options("recommender", timeout_s=10))
class RecommenderModel:
    """The recommender model, one batchable endpoint."""

    model_ref = bentoml.models.BentoModel(ARGS.recommender_model)

    def __init__(self) -> None:
        # One OpenMP thread for the gradient-boosting predict: on 2 busy cores its default
        # thread pool took 46-510 ms for one profile, one thread 16 ms (bench/recommend.py).
        threadpool_limits(1)
        self.model = Recommender.load(verified_path(self.model_ref))
        tune_gc()

    @bentoml.api(batchable=True, max_batch_size=512, max_latency_ms=1000)
    def recommend(self, queries: list[RecommendQuery]) -> list[RecommendScores]:
        """Recommend for n customers; n answers come back in input order."""
        # A profile with no field given is no profile: the propensity would only guess.
        profiles = [(q.profile.model_dump(exclude_none=True) or None) if q.profile else None
                    for q in queries]  # fmt: skip
        answers = self.model.recommend(
            [q.products_held for q in queries], profiles, [q.k for q in queries]
        )
        return [
            RecommendScores(recommendations=[
                RecommendedProduct(product=r.product, name=r.name, score=round(r.score, 6),
                                   reason=r.reason)
                for r in recs
            ])
            for recs in answers
        ]  # fmt: skip
