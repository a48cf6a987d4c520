"""What the other models last said about a user, in Redis (for the advisor's personal context).

Key ``<prefix>:profile:v1:<user>``, a hash, kept ``PROFILE_TTL_S`` after its last write:

- ``risk_band``, ``risk_score``, ``risk_at`` (unix time): written by ``/predict/credit-risk``
  when the request names a ``user_id``;
- ``forecast_month``, ``forecast_total``, ``forecast_lower``, ``forecast_upper`` (INR),
  ``forecast_at``: the total's first forecast month, written by ``/predict/spending``.

The user's monthly spending itself lives in :mod:`finbento.spending_store`. Every method raises
``redis.exceptions.RedisError`` when Redis is down; callers treat the profile as optional.
"""

from __future__ import annotations

import time

import redis

from finbento.feature_store import clear_prefix, connect

FEATURE_SET = "profile:v1"
PROFILE_TTL_S = 90 * 86_400


class ProfileStore:
    """Per-user facts from the models, one Redis hash per user.

    Args:
        client: ``redis.Redis`` with ``decode_responses=True``.
        prefix: key prefix shared by finbento's keys.
    """

    def __init__(self, client: redis.Redis, prefix: str = "finbento") -> None:
        self.r = client
        self.base = f"{prefix}:{FEATURE_SET}"

    @classmethod
    def from_url(cls, url: str, prefix: str = "finbento", timeout_s: float = 0.5) -> ProfileStore:
        """Connect lazily with short timeouts."""
        return cls(connect(url, timeout_s), prefix)

    def update(self, user_id: str, fields: dict[str, str | float | int], kind: str) -> None:
        """Set ``fields`` (plus ``<kind>_at`` = now, unix seconds) and refresh the TTL."""
        key = f"{self.base}:{user_id}"
        pipe = self.r.pipeline()
        pipe.hset(key, mapping={**fields, f"{kind}_at": int(time.time())})
        pipe.expire(key, PROFILE_TTL_S)
        pipe.execute()

    def get(self, user_id: str) -> dict[str, str]:
        """The user's fields (strings as stored); empty if unknown."""
        return self.r.hgetall(f"{self.base}:{user_id}")

    def clear(self) -> int:
        """Delete this store's keys (never FLUSHDB). Returns how many."""
        return clear_prefix(self.r, f"{self.base}:*")
