"""Retries of the idempotent calls a public route makes to a model service (``bentoml.depends``).

When a model-service worker dies (killed, out of memory), BentoML's arbiter starts a new one. The
service's listening socket belongs to the arbiter and stays open, so a new call waits in its
backlog until the new worker accepts it; but the calls in flight on the dead worker's connections
fail at once with aiohttp's ``ClientConnectionError`` (``Connection reset by peer``,
``Server disconnected``) and the public route answered 500 (at concurrency 8, killing the fraud
worker cost 8 answers 500 and 8 more 504, see below; tests/integration/test_faults.py now sees
none). Scoring has no side effect, so such a call is simply made again: :func:`call` retries on
connection errors and on 503 (``ServiceUnavailable``) with a short exponential back-off, for at
most :data:`DEADLINE_S` seconds, then raises the last error. Timeouts are not retried (the
request's own deadline is spent). Each retry is counted in
``ml_dependency_retries_total{service,error}``.

Only idempotent calls go through here (scoring, extraction, forecasts); the advisor's call to
Gemini does not (a retry would ask the LLM twice).

**Respawn.** BentoML's circus arbiter looks for dead workers every 10 s (``check_delay``), so a
killed model service came back 6-10 s later plus its start-up (~3.5 s here): calls waiting in
the backlog then met the public route's 10 s timeout (504). Importing this module makes the
arbiter look every :data:`RESPAWN_CHECK_S` second (:func:`faster_respawn`; the arbiter runs in
the ``bentoml serve`` process, which imports the services before it starts it): measured, the
new worker started 0.7 s after the kill and no call waited more than 4 s. Inside a BentoML
container image (``BENTOML_CONTAINERIZED``) BentoML does not respawn at all; there the
orchestrator restarts the container.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import aiohttp
from bentoml.exceptions import ServiceUnavailable
from prometheus_client import Counter

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

#: Errors after which the same call is made again.
RETRYABLE: tuple[type[BaseException], ...] = (
    aiohttp.ClientConnectionError,
    ConnectionError,
    ServiceUnavailable,
)
#: Longest time spent retrying one call, from its first attempt (s).
DEADLINE_S = 5.0
#: First and longest wait between attempts (s); the wait doubles, with jitter.
BACKOFF_S = (0.05, 1.0)

#: How often BentoML's process arbiter looks for dead workers to replace (s); BentoML uses 10.
RESPAWN_CHECK_S = 1.0

DEPENDENCY_RETRIES = Counter(
    "ml_dependency_retries",
    "Calls to a model service made again after a connection error or 503, by service and error",
    ["service", "error"],
)


async def call(
    service: str, method: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
) -> T:
    """Await ``method(*args, **kwargs)``, retrying on :data:`RETRYABLE` errors.

    Args:
        service: the model service's name (``credit-risk``, ``fraud``, ...), for logs and metrics.
        method: an idempotent async endpoint of a dependency, e.g.
            ``self.credit_risk.to_async.score``.
        *args: its positional arguments (sent again unchanged on a retry).
        **kwargs: its keyword arguments.

    Returns:
        what ``method`` returns.

    Raises:
        Exception: the last error once :data:`DEADLINE_S` is spent, or at once any error that is
            not retryable (timeouts included).
    """
    started = time.monotonic()
    wait = BACKOFF_S[0]
    while True:
        try:
            return await method(*args, **kwargs)
        except TimeoutError:
            raise  # aiohttp's ServerTimeoutError is a connection error too: not worth a retry
        except RETRYABLE as exc:
            pause = wait * (0.5 + random.random() / 2)
            if time.monotonic() - started + pause > DEADLINE_S:
                raise
            error = type(exc).__name__
            DEPENDENCY_RETRIES.labels(service, error).inc()
            log.warning("%s: %s, calling again in %.0f ms", service, error, pause * 1000)
            await asyncio.sleep(pause)
            wait = min(wait * 2, BACKOFF_S[1])


def faster_respawn(check_delay_s: float = RESPAWN_CHECK_S) -> bool:
    """Make BentoML's circus arbiter replace a dead worker within about ``check_delay_s``.

    Patches ``circus.arbiter.Arbiter.__init__`` so the ``check_delay`` that BentoML passes (10 s)
    is at most ``check_delay_s``; idempotent, a no-op without circus.

    Args:
        check_delay_s: longest interval between two looks for dead workers (s).

    Returns:
        True if the patch was applied now, False if it was already applied or cannot be.
    """
    try:
        from circus.arbiter import Arbiter
    except ImportError:
        return False
    if getattr(Arbiter, "_finbento_check_delay", None) is not None:
        return False
    init = Arbiter.__init__

    @functools.wraps(init)
    def __init__(self, *args, **kwargs) -> None:
        if len(args) > 3:  # (watchers, endpoint, pubsub_endpoint, check_delay, ...)
            args = (*args[:3], min(args[3], check_delay_s), *args[4:])
        else:
            kwargs["check_delay"] = min(kwargs.get("check_delay", check_delay_s), check_delay_s)
        init(self, *args, **kwargs)

    Arbiter.__init__ = __init__
    Arbiter._finbento_check_delay = check_delay_s
    return True


faster_respawn()
