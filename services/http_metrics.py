"""Per-model request metrics of a public Bento: errors by type, model info, active models.

:func:`install` adds :class:`ModelMetricsMiddleware` to a public ``@bentoml.service``. In each
worker it publishes ``ml_model_info{model_name,model_version,mlflow_run_id}`` (from the packaged
models' BentoML labels) and ``ml_active_models``, and for every request to a model's route it counts
an answer of 400 or more in ``ml_errors_total{model_name,error_type}`` (types in
:func:`error_type`). Successful items are counted by the routes themselves
(``services.prediction_logging.record``), which know how many items a request scored.
Definitions: :mod:`monitoring.metrics`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from finbento.bentos import BUNDLES, MODEL_ARGS
from monitoring.metrics import (
    ACTIVE_MODELS,
    ERRORS,
    MODEL_INFO,
    PREDICTION_LOG_DROPPED,
    PREDICTION_LOG_FALLBACK,
)

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Route prefix -> model name; ``/transactions`` feeds the fraud (and anomaly) feature store.
ROUTE_MODELS: tuple[tuple[str, str], ...] = (
    ("/predict/credit-risk", "credit-risk"),
    ("/predict/fraud", "fraud"),
    ("/feedback/fraud", "fraud"),
    ("/transactions", "fraud"),
    ("/predict/anomaly", "anomaly"),
    ("/predict/intent", "intent"),
    ("/predict/ner", "ner"),
    ("/predict/category", "categorizer"),
    ("/predict/spending", "spending"),
    ("/advice", "advisor"),
    ("/recommend", "recommender"),
)


def route_model(path: str) -> str | None:
    """The model behind a request path (``/predict/fraud/batch`` -> ``fraud``), None for others."""
    for prefix, model in ROUTE_MODELS:
        if path == prefix or path.startswith(prefix + "/"):
            return model
    return None


def error_type(status: int) -> str | None:
    """``ml_errors_total`` type of an HTTP status; None below 400.

    ``invalid_input`` (400, 413, 422: the caller's request broke a rule), ``not_found`` (404:
    e.g. a user with no stored history), ``client`` (other 4xx), ``unavailable`` (503: a
    dependency is down or the model service shed load), ``timeout`` (504) and ``internal``
    (other 5xx). Alerts on the error rate leave out the first three: they are the caller's.
    """
    if status < 400:
        return None
    if status in (400, 413, 422):
        return "invalid_input"
    if status == 404:
        return "not_found"
    if status < 500:
        return "client"
    return {503: "unavailable", 504: "timeout"}.get(status, "internal")


def publish_model_info(models: tuple[str, ...]) -> int:
    """Set ``ml_model_info`` for each packaged model version and ``ml_active_models``.

    Args:
        models: model names of the bundle (``finbento.bentos.BUNDLES[...].models``).

    Returns:
        How many model versions were published (the fraud challenger counts when packaged).
        A model missing from the store is logged and left out, never raised.
    """
    import bentoml

    from services.args import ARGS

    tags = [(m, getattr(ARGS, MODEL_ARGS[m])) for m in models]
    if "fraud" in models and ARGS.fraud_challenger_model:
        tags.append(("fraud", ARGS.fraud_challenger_model))
    for model in models:  # at 0 from the start, so increase() sees the first loss
        PREDICTION_LOG_DROPPED.labels(model)
        PREDICTION_LOG_FALLBACK.labels(model)
    published = 0
    for model, tag in tags:
        try:
            labels = bentoml.models.get(tag).info.labels
        except Exception as exc:  # metrics must never stop a worker
            log.warning("no model info for %s (%s): %s", model, tag, exc)
            continue
        version = labels.get("mlflow_version", "")
        MODEL_INFO.labels(model, version, labels.get("mlflow_run_id", "")).set(1)
        published += 1
    ACTIVE_MODELS.set(published)
    return published


class ModelMetricsMiddleware:
    """ASGI middleware: per-model error counts; model info published when the app is built.

    Args:
        app: the ASGI app it wraps.
        models: model names served by this Bento.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], models: tuple[str, ...]) -> None:
        self.app = app
        publish_model_info(models)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; count an error answer (or an exception, as 500) of a model route."""
        model = route_model(scope.get("path", "")) if scope["type"] == "http" else None
        if model is None:
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            kind = error_type(status)
            if kind is not None:
                ERRORS.labels(model, kind).inc()


def install(service: Any, bundle: str) -> None:
    """Add the public-request middlewares to a ``@bentoml.service`` of ``bundle``.

    :class:`ModelMetricsMiddleware` outermost, so the refusals of
    :class:`services.guard.RequestGuard` (413, 401) are counted too.
    """
    from services.guard import RequestGuard, cap_validation_errors

    service.add_asgi_middleware(ModelMetricsMiddleware, models=BUNDLES[bundle].models)
    service.add_asgi_middleware(RequestGuard)
    cap_validation_errors(service)  # a 400 lists at most 20 errors (no amplification)
