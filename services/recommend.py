"""The recommendation bundle's public API: which financial product to offer next."""

import bentoml

from services import http_metrics
from services.recommend_routes import RecommendRoutes


@bentoml.service(name="finbento-recommend", workers=1, traffic={"timeout": 10})
class RecommendAPI(RecommendRoutes):
    """Public route of the recommender."""


http_metrics.install(RecommendAPI, "recommend")
