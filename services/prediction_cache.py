"""Redis cache of deterministic predictions, and its admin route ``POST /cache/clear``.

Models whose answer depends only on the input and the model version (credit-risk, intent,
categorizer) look each item up before scoring: key
``<FINBENTO_REDIS_PREFIX>:pcache:<model>:<version>:<sha256 of the canonical JSON input>``
(keys sorted, no whitespace), value the model's output as JSON, kept
``FINBENTO_PREDICTION_CACHE_TTL_S`` seconds. A new model version never reads an old version's
answers. Only the misses reach the model service; a batch costs one ``MGET`` and one
pipelined ``SET`` per request.

``ml_prediction_cache_requests_total{model_name,result}`` counts items by ``hit``, ``miss`` and
``error``. Redis failing is never the caller's problem: the items are scored as if missed, counted
``error``, and the cache is skipped for :data:`PAUSE_S` seconds so a down Redis adds no latency.
``POST /cache/clear[?model=M]`` (admin bearer token, ``finbento.auth.admin_refusal``) deletes the
cached answers with ``SCAN`` + ``UNLINK`` on the prefix: never ``FLUSHDB``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from prometheus_client import Counter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from finbento.auth import admin_refusal

log = logging.getLogger(__name__)

CACHE_REQUESTS = Counter(
    "ml_prediction_cache_requests", "Prediction-cache look-ups by result (hit, miss, error)",
    ["model_name", "result"],
)  # fmt: skip
#: Seconds the cache is skipped after a Redis error.
PAUSE_S = 5.0
#: Redis socket timeout of the cache (s): a slow Redis must not slow scoring much.
TIMEOUT_S = 0.25


def cache_key(prefix: str, model: str, version: str, item: Any) -> str:
    """Redis key of one input (``item``: JSON-serialisable; key order does not matter)."""
    canonical = json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"{prefix}:pcache:{model}:{version}:{hashlib.sha256(canonical.encode()).hexdigest()}"


class PredictionCache:
    """The cache of one worker process (an asyncio Redis client, created on first use).

    Args:
        url: Redis URL; None reads ``FINBENTO_REDIS_URL``.
        prefix: key prefix; None reads ``FINBENTO_REDIS_PREFIX``.
        ttl_s: seconds an answer is kept; None reads ``FINBENTO_PREDICTION_CACHE_TTL_S``
            (0 turns the cache off).
    """

    def __init__(self, url: str | None = None, prefix: str | None = None,
                 ttl_s: int | None = None) -> None:  # fmt: skip
        from finbento.settings import get_settings

        s = get_settings()
        self.url = url or s.redis_url
        self.prefix = prefix or s.redis_prefix
        self.ttl_s = s.prediction_cache_ttl_s if ttl_s is None else ttl_s
        self._client = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._paused_until = 0.0

    @property
    def client(self):
        """The ``redis.asyncio`` client of the running event loop (made on first use in it)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            import redis.asyncio

            self._client = redis.asyncio.Redis.from_url(
                self.url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S
            )
            self._loop = loop
        return self._client

    def _failed(self, model: str, n: int, exc: Exception) -> None:
        CACHE_REQUESTS.labels(model, "error").inc(n)
        self._paused_until = time.monotonic() + PAUSE_S
        log.warning("prediction cache unavailable for %.0f s: %s", PAUSE_S, exc)

    async def cached(
        self,
        model: str,
        version: str,
        items: Sequence[Any],
        compute: Callable[[list[int]], Awaitable[list[Any]]],
    ) -> list[Any]:
        """Answers for ``items``: cached ones from Redis, the rest from ``compute``.

        Args:
            model: model name.
            version: model version that answers (part of the key).
            items: JSON-serialisable inputs, one per answer.
            compute: given the indices of the items not cached, returns their answers
                (JSON-serialisable) in that order.

        Returns:
            one answer per item, in input order. Errors of ``compute`` propagate; Redis errors
            never do.
        """
        if self.ttl_s <= 0:
            return await compute(list(range(len(items))))
        if time.monotonic() < self._paused_until:
            CACHE_REQUESTS.labels(model, "error").inc(len(items))
            return await compute(list(range(len(items))))
        import redis

        keys = [cache_key(self.prefix, model, version, item) for item in items]
        try:
            raw = await self.client.mget(keys)
        except (redis.exceptions.RedisError, OSError) as exc:
            self._failed(model, len(items), exc)
            return await compute(list(range(len(items))))
        answers: list[Any] = [json.loads(r) if r is not None else None for r in raw]
        missing = [i for i, r in enumerate(raw) if r is None]
        CACHE_REQUESTS.labels(model, "hit").inc(len(items) - len(missing))
        if not missing:
            return answers
        CACHE_REQUESTS.labels(model, "miss").inc(len(missing))
        fresh = await compute(missing)
        for i, answer in zip(missing, fresh, strict=True):
            answers[i] = answer
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for i in missing:
                    pipe.set(keys[i], json.dumps(answers[i]), ex=self.ttl_s)
                await pipe.execute()
        except (redis.exceptions.RedisError, OSError) as exc:
            self._failed(model, 0, exc)
        return answers

    def clear(self, model: str | None = None) -> int:
        """Delete cached answers (all, or one model's); returns how many keys went.

        Raises:
            redis.exceptions.RedisError: Redis unreachable.
        """
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=5)
        pattern = f"{self.prefix}:pcache:{model + ':' if model else ''}*"
        deleted, batch = 0, []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) == 1000:
                deleted += client.unlink(*batch)
                batch = []
        if batch:
            deleted += client.unlink(*batch)
        return deleted


_CACHE: PredictionCache | None = None


def get_cache() -> PredictionCache:
    """This process's :class:`PredictionCache` (settings read once)."""
    global _CACHE
    if _CACHE is None:
        _CACHE = PredictionCache()
    return _CACHE


async def _clear(request: Request) -> JSONResponse:
    """``POST /cache/clear[?model=M]``: delete cached predictions (admin); 503 without Redis."""
    import redis

    refusal = admin_refusal(request.headers.get("authorization", ""))
    if refusal is not None:
        status, why = refusal
        return JSONResponse({"detail": why}, status, {"WWW-Authenticate": "Bearer"})
    model = request.query_params.get("model")
    if model is not None and not re.fullmatch(r"[a-z-]{1,32}", model):
        return JSONResponse({"detail": [{"loc": ["query", "model"], "type": "string_pattern",
                                         "msg": "a model name: a-z and '-'"}]}, 422)  # fmt: skip
    try:
        deleted = await asyncio.to_thread(get_cache().clear, model)
    except redis.exceptions.RedisError as exc:
        return JSONResponse({"detail": f"redis unavailable: {type(exc).__name__}"}, 503)
    return JSONResponse({"deleted": deleted, "model": model})


#: Mounted at ``/cache`` on the public services (admin routes, no OpenAPI entry).
app = Starlette(routes=[Route("/clear", _clear, methods=["POST"])])
