"""The advisor's chat history, one Redis list per session.

Key ``<prefix>:advisor:v1:h:<session id>`` (e.g. ``finbento:advisor:v1:h:s-42``) holds the
session's turns, oldest first, as JSON ``{"role": "user"|"model", "text": ..., "ts": unix s}``.
Each write appends, trims the list to the newest ``max_turns`` and refreshes the TTL, in one
MULTI/EXEC pipeline. Only redacted text belongs here: the service stores the safety checks'
output, and ``sanitize`` (e.g. :meth:`SafetyRules.redact`) runs again on every text written.

When Redis cannot be reached the store degrades to stateless chat: reads return no turns with
``available=False`` and writes are skipped; nothing here raises a Redis error to the caller.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import redis

from finbento.feature_store import clear_prefix, connect

FEATURE_SET = "advisor:v1"
ROLES = ("user", "model")
#: Session ids used as-is in keys; any other id is replaced by its SHA-256 (no glob characters).
SAFE_SESSION_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Turn:
    """One chat turn.

    Attributes:
        role: ``"user"`` or ``"model"`` (Gemini's role names).
        text: redacted text.
        ts: when it was said, unix seconds.
    """

    role: str
    text: str
    ts: float

    def to_json(self) -> str:
        """The stored form: ``{"role", "text", "ts"}`` as JSON."""
        return json.dumps({"role": self.role, "text": self.text, "ts": self.ts}, ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str) -> Turn | None:
        """Parse a stored turn; None if it is malformed."""
        try:
            d = json.loads(raw)
            turn = cls(str(d["role"]), str(d["text"]), float(d["ts"]))
        except (ValueError, TypeError, KeyError):
            return None
        return turn if turn.role in ROLES else None


@dataclass(frozen=True)
class History:
    """A session's turns as read, oldest first; ``available`` is False when Redis was down."""

    turns: list[Turn]
    available: bool


class ChatHistory:
    """Per-session chat history in Redis, degrading to none when Redis is down.

    Args:
        client: a ``redis.Redis`` client (``decode_responses=True``), e.g. from :func:`connect`.
        prefix: key prefix shared by finbento's keys.
        max_turns: turns kept per session (user and model turns count one each).
        ttl_s: seconds a session is kept after its last write.
        max_chars: longest text stored per turn (longer texts are cut).
        sanitize: run on every text before it is stored (e.g. PII redaction); returns the text.
    """

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "finbento",
        max_turns: int = 20,
        ttl_s: int = 86_400,
        max_chars: int = 8_000,
        sanitize: Callable[[str], str] | None = None,
    ) -> None:
        if max_turns < 1 or ttl_s < 1 or max_chars < 1:
            raise ValueError("max_turns, ttl_s and max_chars must be positive")
        self.r = client
        self.base = f"{prefix}:{FEATURE_SET}"
        self.max_turns = max_turns
        self.ttl_s = ttl_s
        self.max_chars = max_chars
        self.sanitize = sanitize

    @classmethod
    def from_url(
        cls, url: str, prefix: str = "finbento", timeout_s: float = 0.5, **kwargs: object
    ) -> ChatHistory:
        """Connect lazily to ``url`` with short timeouts (``feature_store.connect``)."""
        return cls(connect(url, timeout_s), prefix, **kwargs)  # type: ignore[arg-type]

    def key(self, session_id: str) -> str:
        """The Redis key of a session."""
        if not SAFE_SESSION_ID.match(session_id):
            session_id = "sha256-" + hashlib.sha256(session_id.encode()).hexdigest()
        return f"{self.base}:h:{session_id}"

    def load(self, session_id: str, limit: int | None = None) -> History:
        """The session's newest ``limit`` turns (default ``max_turns``), oldest first.

        Never raises for Redis failures: returns ``History([], available=False)`` instead.
        Malformed stored turns are skipped.
        """
        n = min(limit or self.max_turns, self.max_turns)
        try:
            rows = self.r.lrange(self.key(session_id), -n, -1)
        except redis.RedisError as e:
            log.warning("chat history unavailable (read): %s", e)
            return History([], available=False)
        return History([t for t in map(Turn.from_json, rows) if t is not None], available=True)

    def append(
        self, session_id: str, turns: Iterable[tuple[str, str]], ts: float | None = None
    ) -> bool:
        """Append turns ``(role, redacted text)`` to the session, trim it and refresh its TTL.

        Args:
            session_id: the session.
            turns: ``(role, text)`` pairs, role ``"user"`` or ``"model"``; empty texts are skipped.
            ts: their time, unix seconds; default now.

        Returns:
            True if stored, False if Redis was down (the turns are dropped).

        Raises:
            ValueError: for a role other than ``"user"``/``"model"``.
        """
        now = time.time() if ts is None else ts
        rows = []
        for role, text in turns:
            if role not in ROLES:
                raise ValueError(f"role must be one of {ROLES}, not {role!r}")
            if self.sanitize is not None:
                text = self.sanitize(text)
            if text:
                rows.append(Turn(role, text[: self.max_chars], now).to_json())
        if not rows:
            return True
        key = self.key(session_id)
        try:
            pipe = self.r.pipeline(transaction=True)
            pipe.rpush(key, *rows)
            pipe.ltrim(key, -self.max_turns, -1)
            pipe.expire(key, self.ttl_s)
            pipe.execute()
        except redis.RedisError as e:
            log.warning("chat history unavailable (write): %s", e)
            return False
        return True

    def delete(self, session_id: str) -> bool:
        """Forget a session. Returns False if Redis was down."""
        try:
            self.r.delete(self.key(session_id))
        except redis.RedisError as e:
            log.warning("chat history unavailable (delete): %s", e)
            return False
        return True

    def clear(self) -> int:
        """Delete every session under this prefix (never FLUSHDB). Returns how many keys.

        Raises:
            redis.RedisError: when Redis cannot be reached (an admin action, not a request path).
        """
        return clear_prefix(self.r, f"{self.base}:h:*")
