"""Fixes for BentoML 1.4, applied when ``services`` is imported: bugs, per-request costs, batching.

**Session refresh.** Since BentoML 1.4.31 the client behind ``bentoml.depends()`` replaces its
aiohttp session every 100 requests (or 300 s) and closes the old session at once, while other
requests may still be in flight on it. Those requests fail with ``ServerDisconnectedError`` /
"Cannot write to closing transport" and the public route answers 500: here about 4 % of requests
at concurrency 8 (bentoml/BentoML#5540 reports the same regression). The fix keeps the refresh but
closes the old session only after the client timeout, when no request can still be using it.

**Per-request work that never changes.** py-spy on a BentoML 1.4.40 endpoint that returns a
constant, under wrk at concurrency 32, found two thirds of the worker's time outside the request:

- ``IOMixin.mime_type`` builds the output model's JSON schema (a new pydantic ``TypeAdapter``) on
  every response to decide between JSON and text: ~20 % of the worker. It depends on the class
  only, so :func:`apply` caches it per class.
- ``APIMethod.__get__`` runs ``inspect.signature`` and ``functools.wraps`` for every call of a
  service method (the server looks the endpoint up per request): ~5 %. The bound callable depends
  on the instance and method only, so it is cached on the instance.

**Adaptive batching waits that feed themselves.** The dispatcher holds a request while the model
is idle for as long as the average wait it observed, and that average includes the time batches
queued behind a busy model. After a burst at concurrency 32 the intent service kept waiting
~35 ms per request at concurrency 1 (28 instead of 96 requests/s) until the average decayed.
:func:`apply` caps the learnt wait at :data:`MAX_BATCH_WAIT_S` (1 ms): batches still form under
load (calls queue while the model runs, and the public workers merge theirs before the hop,
services/coalesce.py), and a lone request goes at once (intent at concurrency 1: 5 ms cap 125
req/s, 1 ms 177; batching off 155).

**One batch at a time.** BentoML's dispatcher runs at most one batch per model service at once
(a semaphore of 1), so a batched model with one intra-op thread used one core while requests
queued, and adding intra-op threads did not help: MiniLM's small matrices scale poorly across
threads. :func:`apply` lets ``FINBENTO_BATCHES_IN_FLIGHT`` batches (default 2, one per core) run
at once; each runs in BentoML's thread pool, and ONNX Runtime and XGBoost release the GIL.

With the two per-request fixes and OpenTelemetry's middleware skipped
(``services.runtime.service_options``), the constant endpoint went from 312 to 2,100 requests/s
(wrk, c=32, 2 shared cores).
"""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger(__name__)

#: Longest time the adaptive-batching dispatcher holds a request while the model is idle (s).
MAX_BATCH_WAIT_S = 0.001


def _graceful_get_session(self):
    """``SessionManager.get_session`` that closes a replaced session only once it is idle."""

    async def get_session():
        if self._session is None or self._should_refresh():
            old = self._session
            self._session = self._make_client()
            self._created_at = time.monotonic()
            self._request_count = 0
            if old is not None:
                grace = (self._timeout.total or 60) + 1
                loop = asyncio.get_running_loop()
                loop.call_later(grace, lambda: loop.create_task(old.close()))
        self._request_count += 1
        return self._session

    return get_session()


def _cache_mime_type() -> bool:
    """Make ``IOMixin.mime_type`` compute once per IO model class."""
    from _bentoml_sdk.io_models import IOMixin

    if getattr(IOMixin, "_finbento_mime_type", False):
        return False
    compute = IOMixin.mime_type.__func__
    cache: dict[type, str] = {}

    def mime_type(cls: type) -> str:
        try:
            return cache[cls]
        except KeyError:
            cache[cls] = media_type = compute(cls)
            return media_type

    IOMixin.mime_type = classmethod(mime_type)
    IOMixin._finbento_mime_type = True
    return True


def _cache_bound_methods() -> bool:
    """Make ``APIMethod.__get__`` build each instance's bound callable once."""
    from _bentoml_sdk.method import APIMethod

    if getattr(APIMethod, "_finbento_cached_get", False):
        return False
    bind = APIMethod.__get__

    def get(self: APIMethod, instance: object, owner: type) -> object:
        if instance is None:
            return self
        try:
            cache = instance.__dict__.setdefault("_finbento_api_methods", {})
        except AttributeError:  # no instance dict (slots): nothing to cache on
            return bind(self, instance, owner)
        try:
            return cache[self.name]
        except KeyError:
            cache[self.name] = method = bind(self, instance, owner)
            return method

    APIMethod.__get__ = get
    APIMethod._finbento_cached_get = True
    return True


def _cap_batch_wait() -> bool:
    """Cap the adaptive-batching optimizer's learnt wait at :data:`MAX_BATCH_WAIT_S`."""
    from bentoml._internal.marshal.dispatcher import Optimizer

    if getattr(Optimizer, "_finbento_capped_wait", False):
        return False
    refresh = Optimizer.trigger_refresh

    def trigger_refresh(self: Optimizer) -> None:
        refresh(self)
        self.wait = min(self.wait, MAX_BATCH_WAIT_S)

    Optimizer.trigger_refresh = trigger_refresh
    Optimizer._finbento_capped_wait = True
    return True


def _batches_in_flight() -> bool:
    """Let each adaptive-batching dispatcher run ``FINBENTO_BATCHES_IN_FLIGHT`` batches at once."""
    from bentoml._internal.marshal.dispatcher import CorkDispatcher, NonBlockSema

    if getattr(CorkDispatcher, "_finbento_in_flight", False):
        return False
    init = CorkDispatcher.__init__

    def __init__(self: CorkDispatcher, *args: object, **kwargs: object) -> None:
        init(self, *args, **kwargs)
        if kwargs.get("shared_sema") is None:  # BentoML's own default: NonBlockSema(1)
            from finbento.settings import get_settings

            self._sema = NonBlockSema(get_settings().batches_in_flight)

    CorkDispatcher.__init__ = __init__
    CorkDispatcher._finbento_in_flight = True
    return True


def _graceful_session_refresh() -> bool:
    """Patch ``SessionManager.get_session`` if this BentoML has the refreshing session manager."""
    try:
        from _bentoml_impl.client.proxy2 import SessionManager
    except ImportError:
        return False
    if not hasattr(SessionManager, "_should_refresh") or getattr(SessionManager, "_finbento", 0):
        return False
    SessionManager.get_session = _graceful_get_session
    SessionManager._finbento = 1
    log.debug("patched BentoML SessionManager: graceful session refresh")
    return True


def apply() -> bool:
    """Apply every fix of this module (idempotent).

    Returns:
        True if any fix was applied now, False if all were applied already (or not needed).
    """
    applied = [_graceful_session_refresh(), _cache_mime_type(), _cache_bound_methods(),
               _cap_batch_wait(), _batches_in_flight()]  # fmt: skip
    return any(applied)
