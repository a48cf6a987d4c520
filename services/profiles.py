"""Mixin for routes that keep what their model said about a named user (for the advisor)."""

from __future__ import annotations

import logging
from functools import cached_property

import redis

from finbento.log_privacy import pseudonym
from finbento.profile_store import ProfileStore
from finbento.settings import get_settings

log = logging.getLogger(__name__)


class ProfileWriter:
    """Gives a route ``remember(user_id, fields, kind)``, which never fails the request."""

    @cached_property
    def profile_store(self) -> ProfileStore:
        """Per-user facts in Redis (connects lazily)."""
        s = get_settings()
        return ProfileStore.from_url(s.redis_url, s.redis_prefix)

    def remember(self, user_id: str, fields: dict[str, str | float | int], kind: str) -> None:
        """Store ``fields`` in the user's profile; a Redis fault is logged, not raised."""
        try:
            self.profile_store.update(user_id, fields, kind)
        except redis.exceptions.RedisError as exc:
            log.warning("%s not kept in the profile of user %s: %s", kind, pseudonym(user_id), exc)
