"""Secrets compared in constant time: the admin bearer token and the API keys.

Both compare SHA-256 digests with :func:`hmac.compare_digest`, so the time taken tells neither a
secret's content nor its length. Used by the admin routes (``monitoring/api.py``,
``services/prediction_cache.py``) and the public-request guard (``services/guard.py``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable


def digest(secret: str) -> bytes:
    """SHA-256 of a secret (32 bytes)."""
    return hashlib.sha256(secret.encode()).digest()


def matches_any(given: str, expected: Iterable[bytes]) -> bool:
    """Whether ``given`` is one of the secrets whose digests are ``expected`` (all compared)."""
    d, ok = digest(given), False
    for e in expected:  # no early exit
        ok |= hmac.compare_digest(d, e)
    return ok and bool(given)


def bearer(authorization: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` header value; "" for other schemes."""
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def admin_refusal(authorization: str) -> tuple[int, str] | None:
    """Why a request may not use an admin route, or None when its bearer token is right.

    Returns:
        ``(403, ...)`` while ``FINBENTO_ADMIN_TOKEN`` is unset (admin routes off), ``(401, ...)``
        for a missing or wrong token, else None.
    """
    from finbento.settings import get_settings

    token = get_settings().admin_token
    if token is None or not token.get_secret_value():
        return 403, "admin routes are disabled: set FINBENTO_ADMIN_TOKEN"
    if not matches_any(bearer(authorization), [digest(token.get_secret_value())]):
        return 401, "admin token required"
    return None
