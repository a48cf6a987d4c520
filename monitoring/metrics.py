"""finbento's own Prometheus metrics (exposed on the Bento's /metrics beside BentoML's).

Names follow the ops issue: ``ml_feature_store_requests_total{result}`` counts feature-store
look-ups (``hit``: the customer had history, ``miss``: none yet, ``error``: Redis failed) and
``ml_degraded_responses_total{model_name,reason}`` counts answers given without the full features.
"""

from prometheus_client import Counter

FEATURE_STORE_REQUESTS = Counter(
    "ml_feature_store_requests", "Feature-store look-ups by result (hit, miss, error)", ["result"]
)
DEGRADED_RESPONSES = Counter(
    "ml_degraded_responses", "Answers given without full features", ["model_name", "reason"]
)
