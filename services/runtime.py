"""Process-level tuning shared by every service worker, and every service's BentoML options."""

from __future__ import annotations

import gc
from typing import Any

from finbento.settings import get_settings


def service_options(name: str, timeout_s: float = 10, public: bool = False) -> dict[str, Any]:
    """Keyword arguments of ``@bentoml.service`` for every finbento service.

    Args:
        name: the service name (``finbento-risk``, ``intent``, ...).
        timeout_s: request timeout, seconds (BentoML answers 504 past it).
        public: a public API service: ``FINBENTO_API_WORKERS`` processes (model services keep
            one: each holds its model, and batching gathers more in one process).

    Returns:
        ``name``, ``workers``, ``traffic``, ``logging`` (access log: ``FINBENTO_ACCESS_LOG``)
        and, unless ``FINBENTO_TRACING`` is on, a ``tracing`` option that excludes every URL from
        OpenTelemetry's middleware (measured: it and BentoML's per-response schema work cost
        ~85 % of a trivial endpoint's throughput; see services/bentoml_fixes.py).
    """
    settings = get_settings()
    options: dict[str, Any] = {
        "name": name,
        "workers": settings.api_workers if public else 1,
        "traffic": {"timeout": timeout_s},
        "logging": {"access": {"enabled": settings.access_log}},
    }
    if not settings.tracing:
        options["tracing"] = {"excluded_urls": ["."]}  # a regex every URL matches
    return options


def tune_gc(gen0_threshold: int = 50_000) -> None:
    """Make garbage-collection pauses short and rare in a serving worker.

    After start-up, ``gc.freeze()`` moves every object that exists (modules, the model, BentoML's
    machinery) to a permanent generation that collections skip, so a full collection only walks
    what requests created. A higher generation-0 threshold (default 700 allocations) makes
    collections rarer; request objects are short-lived, so little survives to older generations.
    Measured effect: bench/serving.py (see README, Performance).
    """
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)
