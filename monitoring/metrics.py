"""finbento's own Prometheus metrics (exposed on the Bento's /metrics beside BentoML's).

Names follow the ops issue: ``ml_feature_store_requests_total{result}`` counts feature-store
look-ups (``hit``: the customer had history, ``miss``: none yet, ``error``: Redis failed) and
``ml_degraded_responses_total{model_name,reason}`` counts answers given without the full features.
``ml_feature_store_spooled_total{result}`` counts transactions whose feature-store write failed
(Redis down) by what became of them (:class:`finbento.feature_store.IngestSpool`): ``spooled``
(appended to the local spool), ``replayed`` (written into the feature store from it later) and
``dropped`` (lost: spool full and rotated away, file not writable, torn line).

Prediction log (:mod:`monitoring.prediction_log`): ``ml_prediction_log_dropped_total{model_name}``
counts records lost (queue full, log closed, fallback file rotated away, unserializable) and
``ml_prediction_log_fallback_total{model_name}`` records written to the local file because Redis
was down (they are replayed into Redis later).

Drift (:mod:`monitoring.drift`), set by each check in the process that runs it (the scheduler):
``ml_drift_score{model_name,feature}`` is Evidently's drift score of one feature (or of the
prediction column; its meaning depends on the method: p-value for K-S/chi-square/Z-test, where
low means drift, distance for Wasserstein/Jensen-Shannon, where high means drift);
``ml_feature_drifted{model_name,feature}`` is 1 where the feature drifted, else 0;
``ml_drift_share{model_name}`` the share of features that drifted (0-1) and
``ml_dataset_drift{model_name}`` 1 if the dataset drifted (share >= Evidently's drift share),
else 0; ``ml_drift_level{model_name}`` the check's level with the model's own thresholds
(``FINBENTO_DRIFT_*_SHARE``, ``FINBENTO_DRIFT_THRESHOLDS``): 0 ok, 1 warning, 2 critical.

Serving (:mod:`services.http_metrics`): ``ml_predictions_total{model_name,model_version,status}``
counts items scored (status ``ok`` or ``degraded``), ``ml_prediction_latency_seconds{model_name}``
times each request's work, ``ml_errors_total{model_name,error_type}`` counts failed requests
(``invalid_input``: 400/413/422, ``not_found``: 404, ``unavailable``: 503, ``timeout``: 504,
``internal``: other 5xx), ``ml_model_info{model_name,model_version,mlflow_run_id}`` is 1 per model
version a Bento serves and ``ml_active_models`` how many model versions that is.

Multiprocess: ``bentoml serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` for every worker it starts, so
these metrics are summed over workers and dependent services on the Bento's ``/metrics``. Gauges
say how to merge processes: ``max`` for the info gauges, ``mostrecent`` for drift (set by one
check, in whichever process ran it).
"""

from prometheus_client import Counter, Gauge, Histogram

FEATURE_STORE_REQUESTS = Counter(
    "ml_feature_store_requests", "Feature-store look-ups by result (hit, miss, error)", ["result"]
)
FEATURE_STORE_SPOOLED = Counter(
    "ml_feature_store_spooled",
    "Transactions whose feature-store write failed: spooled locally, replayed later, or dropped",
    ["result"],
)
DEGRADED_RESPONSES = Counter(
    "ml_degraded_responses", "Answers given without full features", ["model_name", "reason"]
)
PREDICTION_LOG_DROPPED = Counter(
    "ml_prediction_log_dropped", "Prediction-log records lost (queue full, ...)", ["model_name"]
)
PREDICTION_LOG_FALLBACK = Counter(
    "ml_prediction_log_fallback",
    "Prediction-log records written to the local fallback file (Redis down)",
    ["model_name"],
)


def _last_check(name: str, documentation: str, labels: list[str]) -> Gauge:
    """A drift gauge: set by one check, merged over processes by its most recent value."""
    return Gauge(name, documentation, labels, multiprocess_mode="mostrecent")


DRIFT_SCORE = _last_check(
    "ml_drift_score",
    "Evidently drift score of a feature or prediction (p-value or distance, see method)",
    ["model_name", "feature"],
)
FEATURE_DRIFTED = _last_check(
    "ml_feature_drifted", "1 if the feature drifted in the last check, else 0",
    ["model_name", "feature"],
)  # fmt: skip
DRIFT_SHARE = _last_check("ml_drift_share", "Share of features that drifted (0-1)", ["model_name"])
DATASET_DRIFT = _last_check("ml_dataset_drift", "1 if the dataset drifted, else 0", ["model_name"])
DRIFT_LEVEL = _last_check(
    "ml_drift_level", "Level of the last drift check: 0 ok, 1 warning, 2 critical", ["model_name"]
)

PREDICTIONS = Counter(
    "ml_predictions", "Items scored, per model version", ["model_name", "model_version", "status"]
)
PREDICTION_LATENCY = Histogram(
    "ml_prediction_latency_seconds",
    "Time from request to answer of a public route",
    ["model_name"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
MODEL_CALL_ITEMS = Histogram(
    "ml_model_call_items",
    "Items per call of a public worker to a model service (concurrent requests merged)",
    ["model_name"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
ERRORS = Counter(
    "ml_errors", "Failed requests of a public route, by error type", ["model_name", "error_type"]
)
MODEL_INFO = Gauge(
    "ml_model_info", "1 per model version this Bento serves",
    ["model_name", "model_version", "mlflow_run_id"], multiprocess_mode="max",
)  # fmt: skip
ACTIVE_MODELS = Gauge(
    "ml_active_models", "Model versions this Bento serves", multiprocess_mode="max"
)
