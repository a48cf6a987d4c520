"""The recommendation bundle's public API: which financial product to offer next."""

import bentoml

from services import http_metrics
from services.recommend_routes import RecommendRoutes
from services.runtime import service_options


@bentoml.service(**service_options("finbento-recommend", timeout_s=10, public=True))
class RecommendAPI(RecommendRoutes):
    """Public route of the recommender."""


http_metrics.install(RecommendAPI, "recommend")
