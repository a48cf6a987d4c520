"""A fix for BentoML's service-to-service client, applied when ``services`` is imported.

Since BentoML 1.4.31 the client behind ``bentoml.depends()`` replaces its aiohttp session every 100
requests (or 300 s) and closes the old session at once, while other requests may still be in
flight on it. Those requests fail with ``ServerDisconnectedError`` / "Cannot write to closing
transport" and the public route answers 500: here about 4 % of requests at concurrency 8
(bentoml/BentoML#5540 reports the same regression). The fix keeps the refresh but closes the old
session only after the client timeout, when no request can still be using it.
"""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger(__name__)


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


def apply() -> bool:
    """Patch ``SessionManager.get_session`` if this BentoML has the refreshing session manager.

    Returns:
        True if the patch was applied (BentoML >= 1.4.31), False if not needed.
    """
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
