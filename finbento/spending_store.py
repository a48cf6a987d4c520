"""Users' monthly spending and cached forecasts, in Redis (for the ``spending`` route).

Keys (``<prefix>:spending:v1:...``):

| key | type | holds | kept |
|---|---|---|---|
| ``m:<user>`` | hash | ``<YYYY-MM>|<category>`` -> total spent that month (INR, > 0) | 3 years |
| ``f:<digest>`` | string | a forecast answer (JSON) | ``spending_cache_ttl_s`` |

Monthly totals are all a forecast needs, so the store never keeps single transactions; loading the
same history twice overwrites the same fields (idempotent). A forecast is cached under a digest of
the model version, the user's months and the request, so new history or a new model version never
serves a stale answer. Every method raises ``redis.exceptions.RedisError`` when Redis is down.
"""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import redis

from finbento.feature_store import clear_prefix, connect

FEATURE_SET = "spending:v1"
HISTORY_TTL_S = 3 * 366 * 86_400


class SpendingStore:
    """Monthly totals per user and category, and a forecast cache.

    Args:
        client: ``redis.Redis`` with ``decode_responses=True``.
        prefix: key prefix shared by finbento's keys.
    """

    def __init__(self, client: redis.Redis, prefix: str = "finbento") -> None:
        self.r = client
        self.base = f"{prefix}:{FEATURE_SET}"

    @classmethod
    def from_url(cls, url: str, prefix: str = "finbento", timeout_s: float = 0.5) -> SpendingStore:
        """Connect lazily with short timeouts."""
        return cls(connect(url, timeout_s), prefix)

    def set_history(self, user_id: str, history: pd.DataFrame) -> int:
        """Store a user's spending as monthly totals per category (replacing those months).

        Args:
            user_id: the user.
            history: ``date`` (datetime-like), ``amount`` (INR spent, > 0), ``category``.

        Returns:
            number of (month, category) totals written.
        """
        months = pd.to_datetime(history["date"]).dt.strftime("%Y-%m")
        totals = history.groupby([months, history["category"]])["amount"].sum()
        mapping = {f"{m}|{c}": float(v) for (m, c), v in totals.items()}
        key = f"{self.base}:m:{user_id}"
        pipe = self.r.pipeline()
        if mapping:
            pipe.hset(key, mapping=mapping)
        pipe.expire(key, HISTORY_TTL_S)
        pipe.execute()
        return len(mapping)

    def history(self, user_id: str) -> pd.DataFrame:
        """A user's monthly totals: ``date`` (first of the month), ``amount``, ``category``.

        Empty DataFrame (same columns) if the user is unknown.
        """
        fields = self.r.hgetall(f"{self.base}:m:{user_id}")
        rows = [(k.split("|", 1), float(v)) for k, v in fields.items()]
        return pd.DataFrame(
            {"date": pd.to_datetime([mc[0] + "-01" for mc, _ in rows]),
             "amount": [v for _, v in rows], "category": [mc[1] for mc, _ in rows]}
        )  # fmt: skip

    @staticmethod
    def request_digest(model_version: str, history: pd.DataFrame, request: dict) -> str:
        """sha256 of the model version, the history's monthly totals and the request fields."""
        months = pd.to_datetime(history["date"]).dt.strftime("%Y-%m")
        totals = history.groupby([months, history["category"]])["amount"].sum().round(2)
        h = hashlib.sha256(model_version.encode())
        h.update(totals.to_json().encode())
        h.update(json.dumps(request, sort_keys=True, default=str).encode())
        return h.hexdigest()

    def cached(self, digest: str) -> dict | None:
        """The cached answer for ``digest``, or None."""
        raw = self.r.get(f"{self.base}:f:{digest}")
        return None if raw is None else json.loads(raw)

    def cache(self, digest: str, answer: dict, ttl_s: int) -> None:
        """Cache ``answer`` (JSON-serialisable) for ``ttl_s`` seconds."""
        self.r.set(f"{self.base}:f:{digest}", json.dumps(answer), ex=ttl_s)

    def clear(self) -> int:
        """Delete this store's keys (never FLUSHDB). Returns how many."""
        return clear_prefix(self.r, f"{self.base}:*")
