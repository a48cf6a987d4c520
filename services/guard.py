"""What every public request passes before a route sees it: a size limit and, when set, an API key.

:class:`RequestGuard` (ASGI) answers, without calling the app:

- **413** when the body is larger than ``FINBENTO_MAX_REQUEST_BYTES`` (default 1 MiB), or, on a
  one-item route (:data:`ITEM_ROUTES`: one applicant, transaction or text of at most a few KB),
  than ``FINBENTO_MAX_ITEM_REQUEST_BYTES`` (default 64 KiB): at once from ``Content-Length``, or
  while reading a chunked body, which it buffers up to the limit. The tighter limit refuses the
  hostile bodies that cost the most to parse (100,000-character strings, deep nesting, 60,000
  keys) before a byte of them is read (bench/hostile.py);
- **415** on a model route whose ``Content-Type`` is set and not ``application/json`` (BentoML
  would try multipart parsing and fail with a 500);
- **401** on a model route (``services.http_metrics.route_model``) when ``FINBENTO_API_KEYS`` is
  set and the request carries none of them in ``X-API-Key`` or ``Authorization: Bearer``.
  Keys are compared with :func:`hmac.compare_digest` (constant time) on their SHA-256 digests,
  so neither a key's content nor its length leaks through timing. Health, metrics and the
  OpenAPI pages stay open; admin routes have their own token (``monitoring/api.py``).

Both answers are JSON ``{"detail": [{"loc", "msg", "type"}]}`` like pydantic's, naming the rule.
On a model route it also rewrites BentoML's answer to a batch-size error (422, a bare
``[{"error": ...}]``) into ``{"error", "detail": [{"loc", "msg", "type"}]}`` (:func:`reshape_422`).

:func:`cap_validation_errors` keeps a 400 small: BentoML answers a ``ValidationError`` with every
error, so 650 KB of unknown fields made an 8.5 MB answer and 290 ms of CPU in the event loop
(bench/hostile.py); only the first :data:`MAX_REPORTED_ERRORS` are kept, plus a count.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from finbento.auth import bearer, digest, matches_any
from services.http_metrics import route_model
from services.schemas import batch_size_detail

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Most validation errors a 400 answer lists (the rest are counted in one more item).
MAX_REPORTED_ERRORS = 20
#: Routes whose body holds one item (``FINBENTO_MAX_ITEM_REQUEST_BYTES`` applies): the largest
#: valid one is a 2,000-character NER text, under 25 KB even with every character escaped.
ITEM_ROUTES = frozenset({"/predict/credit-risk", "/predict/fraud", "/predict/anomaly",
                         "/predict/intent", "/predict/ner", "/predict/category"})  # fmt: skip


async def _answer(send: Send, status: int, loc: list[str], msg: str, kind: str,
                  headers: list[tuple[bytes, bytes]] = ()) -> None:  # fmt: skip
    body = json.dumps({"detail": [{"loc": loc, "msg": msg, "type": kind}]}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        *headers]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


def reshape_422(body: bytes) -> bytes:
    """BentoML's body of a :class:`services.schemas.BatchSizeError` in the project's 4xx shape.

    Args:
        body: what BentoML sent with the 422: ``[{"error": "applicants: at most ..."}]``.

    Returns:
        ``{"error": msg, "detail": [{"loc": [field], "msg": rule, "type": "too_long"}]}``;
        ``body`` unchanged if it is not a batch-size error.
    """
    try:
        answer = json.loads(body)
    except ValueError:
        return body
    if isinstance(answer, list) and len(answer) == 1:  # BentoML 1.4 wraps it in a tuple
        answer = answer[0]
    message = answer.get("error") if isinstance(answer, dict) else None
    detail = batch_size_detail(message) if isinstance(message, str) else None
    if detail is None:
        return body
    return json.dumps({"error": message, "detail": [detail]}).encode()


def _reshaping_422(send: Send) -> Send:
    """``send`` that passes a 422 answer through :func:`reshape_422` (other answers as they are)."""
    held: list[Message] = []
    chunks: list[bytes] = []

    async def reshaping(message: Message) -> None:
        if message["type"] == "http.response.start" and message.get("status") == 422:
            held.append(message)
            return
        if not held or message["type"] != "http.response.body":
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = reshape_422(b"".join(chunks))
        start = held.pop()
        kept = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        start["headers"] = [*kept, (b"content-length", str(len(body)).encode())]
        await send(start)
        await send({"type": "http.response.body", "body": body})

    return reshaping


def trimmed(exc: ValidationError, limit: int = MAX_REPORTED_ERRORS) -> ValidationError:
    """``exc`` with its first ``limit`` errors and a ``too_many_errors`` item counting the rest.

    Each kept error keeps its ``type``, ``loc``, ``msg`` and ``input``; ``exc`` itself is returned
    when it holds ``limit`` errors or fewer.
    """
    count = exc.error_count()
    if count <= limit:
        return exc
    kept: list[InitErrorDetails] = [
        {"type": PydanticCustomError(e["type"], e["msg"]), "loc": e["loc"], "input": e["input"]}
        for e in exc.errors(include_url=False, include_context=False)[:limit]
    ]
    rest = PydanticCustomError("too_many_errors", f"{count - limit} more errors not listed")
    kept.append({"type": rest, "loc": (), "input": None})
    return ValidationError.from_exception_data(exc.title, kept)


def cap_validation_errors(service: Any, limit: int = MAX_REPORTED_ERRORS) -> int:
    """Make every API of a ``@bentoml.service`` answer at most ``limit`` validation errors.

    Wraps each API's ``input_spec.from_http_request`` (where BentoML parses and validates the
    body) so that a ``ValidationError`` leaves it :func:`trimmed`.

    Returns:
        How many APIs were wrapped (already wrapped ones are skipped).
    """
    wrapped = 0
    for api in service.apis.values():
        spec = api.input_spec
        if getattr(spec, "_finbento_capped", False):
            continue
        parse = spec.from_http_request

        async def capped(request: Any, serde: Any, _parse: Any = parse) -> Any:
            try:
                return await _parse(request, serde)
            except ValidationError as exc:
                raise trimmed(exc, limit) from None

        spec.from_http_request, spec._finbento_capped = capped, True
        wrapped += 1
    return wrapped


class RequestGuard:
    """ASGI middleware: request-size limits (413), JSON only (415) and optional API keys (401).

    Args:
        app: the ASGI app it wraps.
        max_bytes: largest accepted body (bytes); None reads ``FINBENTO_MAX_REQUEST_BYTES``.
        api_keys: accepted keys; None reads ``FINBENTO_API_KEYS`` (empty: no key needed).
        max_item_bytes: largest body of an :data:`ITEM_ROUTES` route (bytes, at most
            ``max_bytes``); None reads ``FINBENTO_MAX_ITEM_REQUEST_BYTES``.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], max_bytes: int | None = None,
                 api_keys: list[str] | None = None,
                 max_item_bytes: int | None = None) -> None:  # fmt: skip
        from finbento.settings import get_settings

        settings = get_settings()
        self.app = app
        self.max_bytes = settings.max_request_bytes if max_bytes is None else max_bytes
        item = settings.max_item_request_bytes if max_item_bytes is None else max_item_bytes
        self.max_item_bytes = min(item, self.max_bytes)
        keys = [k.get_secret_value() for k in settings.api_keys] if api_keys is None else api_keys
        self.key_digests = [digest(k) for k in keys]

    def _authorised(self, headers: dict[bytes, bytes]) -> bool:
        given = headers.get(b"x-api-key", b"").decode("latin-1")
        given = given or bearer(headers.get(b"authorization", b"").decode("latin-1"))
        return matches_any(given, self.key_digests)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a too-large body or a missing key; otherwise pass the (buffered) request on."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if route_model(scope.get("path", "")) is not None:
            send = _reshaping_422(send)
        guarded = self.key_digests and route_model(scope.get("path", "")) is not None
        if guarded and not self._authorised(headers):
            await _answer(send, 401, ["header", "x-api-key"], "a valid API key is required "
                          "(X-API-Key or Authorization: Bearer)", "api_key",
                          [(b"www-authenticate", b"Bearer")])  # fmt: skip
            return
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if (
            scope.get("method") == "POST"
            and route_model(scope.get("path", ""))
            and ctype
            and (ctype != b"application/json")
        ):
            await _answer(send, 415, ["header", "content-type"], "the body must be JSON "
                          "(Content-Type: application/json)", "unsupported_media_type")  # fmt: skip
            return
        limit = self.max_item_bytes if scope.get("path") in ITEM_ROUTES else self.max_bytes
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > limit:
                await self._too_large(send, limit)
                return
            await self.app(scope, receive, send)
            return
        if scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        chunks, size, more = [], 0, True
        while more:  # chunked body: buffer it, refusing it once over the limit
            message = await receive()
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > limit:
                await self._too_large(send, limit)
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replayed() -> Message:
            return replay.pop() if replay else await receive()

        await self.app(scope, replayed, send)

    async def _too_large(self, send: Send, limit: int) -> None:
        await _answer(send, 413, ["body"], f"request body larger than {limit} bytes",
                      "request_too_large")  # fmt: skip
