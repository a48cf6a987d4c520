"""What the public routes scored, into the prediction log (monitoring/prediction_log.py).

Also counts ``ml_predictions_total{model_name,model_version,status}`` (status ``degraded`` for
items whose prediction says ``"degraded": true``, else ``ok``) and observes
``ml_prediction_latency_seconds{model_name}``, so champion and shadow challenger are told apart.

Each route calls :func:`record` once per request with one inputs/prediction pair per item; the
log only enqueues (about 1-4 µs a record, bench/prediction_log.py) and a background thread writes
to Redis, or to a local file while Redis is down, so logging never fails or slows a request.
Drift checks (monitoring/drift.py) compare these inputs with each version's training reference, so
inputs use the reference's column names. ``FINBENTO_PREDICTION_LOG_ENABLED=false`` turns it off.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from finbento.settings import get_settings
from monitoring.metrics import PREDICTION_LATENCY, PREDICTIONS
from monitoring.prediction_log import get_prediction_log


def record(
    model: str,
    version: str,
    inputs: Sequence[Mapping[str, object]],
    predictions: Sequence[Mapping[str, object]],
    started: float,
) -> None:
    """Log one request's items.

    Args:
        model: model name.
        version: the MLflow registered version that answered.
        inputs: per item, feature -> scalar (or text).
        predictions: per item, output -> scalar, same length as ``inputs``.
        started: ``time.perf_counter()`` when the request's work started; the request's latency
            (milliseconds) is logged with every item.
    """
    latency_ms = (time.perf_counter() - started) * 1000
    degraded = sum(1 for p in predictions if p.get("degraded"))
    if degraded:
        PREDICTIONS.labels(model, version, "degraded").inc(degraded)
    if len(predictions) > degraded:
        PREDICTIONS.labels(model, version, "ok").inc(len(predictions) - degraded)
    PREDICTION_LATENCY.labels(model).observe(latency_ms / 1000)
    settings = get_settings()
    if not settings.prediction_log_enabled:
        return
    log = get_prediction_log(settings)
    for x, y in zip(inputs, predictions, strict=True):
        log.record(model, version, x, y, latency_ms)
