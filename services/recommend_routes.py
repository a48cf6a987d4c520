"""Public recommendation route: ``POST /recommend``.

``{"customer_id"?, "products_held": [codes], "profile"?: {bank-marketing fields}, "k": 1-10}``
-> ``{"recommendations": [{"product", "name", "score", "reason"}], "model", "model_version"}``.
Shape errors answer 400 naming the field (services/recommend_schemas.py); codes that are shaped
right but not in the catalogue answer 422 with ``unknown_products`` naming them. An empty holding
gets the popular products the customer is eligible for.
"""

from __future__ import annotations

import time

import bentoml
from starlette.responses import JSONResponse

from finbento.recommender import MODEL_NAME, PRODUCT_CODES
from services import dependency, prediction_logging
from services.args import ARGS, mlflow_version
from services.recommend_schemas import (
    RecommendQuery,
    RecommendRequest,
    RecommendResponse,
    RecommendScores,
)
from services.recommender import RecommenderModel


def unknown_products(codes: list[str]) -> list[str]:
    """Codes not in the catalogue, sorted, each once."""
    return sorted(set(codes) - set(PRODUCT_CODES))


class RecommendRoutes:
    """Mixin for a public ``@bentoml.service``: the recommendation route and its model service."""

    recommender = bentoml.depends(RecommenderModel)

    @bentoml.api(route="/recommend", input_spec=RecommendRequest)
    async def recommend(
        self,
        products_held: list[str],
        k: int = 3,
        customer_id: str | None = None,
        profile: object = None,
    ) -> RecommendResponse:
        """Next products to offer a customer, best first, each with a reason."""
        started = time.perf_counter()
        request = RecommendRequest(products_held=products_held, k=k, customer_id=customer_id,
                                   profile=profile)  # fmt: skip
        unknown = unknown_products(request.products_held)
        if unknown:
            return JSONResponse(
                {"error": f"unknown product codes: {', '.join(unknown)}",
                 "unknown_products": unknown, "known_products": list(PRODUCT_CODES)},
                status_code=422,
            )  # fmt: skip
        held = sorted(set(request.products_held))
        query = RecommendQuery(products_held=held, profile=request.profile, k=request.k)
        (scores,) = await dependency.call(MODEL_NAME, self.recommender.to_async.recommend, [query])
        scores = RecommendScores.model_validate(scores)
        version = mlflow_version(ARGS.recommender_model)
        top = scores.recommendations[0] if scores.recommendations else None
        prediction_logging.record(
            MODEL_NAME, version,
            [{"n_products_held": len(held), "products_held": ",".join(held),
              "has_profile": int(request.profile is not None)}],
            [{"product": top.product if top else "", "score": top.score if top else 0.0,
              "n_recommendations": len(scores.recommendations)}],
            started,
        )  # fmt: skip
        return RecommendResponse(**scores.model_dump(), customer_id=request.customer_id,
                                 model=MODEL_NAME, model_version=version)  # fmt: skip
