"""Public advisor route: ``POST /advice``.

The route keeps the session's chat history in Redis (finbento/advisor/history.py: capped, with a
TTL, only redacted text) and, when the request names a ``user_id`` finbento knows, builds a short
profile from what the other models keep about the user (monthly spending, the last spending
forecast, the credit-risk band: finbento/advisor/profile.py). The advisor model service does the
rest (safety rules, retrieval, Gemini or the offline answer). Redis down: the answer comes without
history and profile, ``history_available`` is false, and the fault is counted; nothing fails.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import cached_property

import bentoml
import redis

from finbento.advisor.advisor import Advice
from finbento.advisor.history import ChatHistory
from finbento.advisor.profile import build_profile
from finbento.advisor.retrieval import MODEL_NAME
from finbento.profile_store import ProfileStore
from finbento.settings import get_settings
from finbento.spending_store import SpendingStore
from monitoring.metrics import DEGRADED_RESPONSES
from services import prediction_logging
from services.advisor import AdvisorModel
from services.advisor_schemas import AdvicePrediction, AdviceRequest, Safety, Source
from services.args import ARGS, mlflow_version

log = logging.getLogger(__name__)


class AdvisorRoutes:
    """Mixin for a public ``@bentoml.service``: the advice route and its model service."""

    advisor = bentoml.depends(AdvisorModel)

    @cached_property
    def chat_history(self) -> ChatHistory:
        """Per-session chat history in Redis (connects lazily; never raises on Redis faults)."""
        s = get_settings()
        return ChatHistory.from_url(s.redis_url, s.redis_prefix, max_turns=s.advisor_history_turns,
                                    ttl_s=s.advisor_history_ttl_s)  # fmt: skip

    @cached_property
    def user_stores(self) -> tuple[SpendingStore, ProfileStore]:
        """The user's monthly spending and the other models' last answers (lazy connections)."""
        s = get_settings()
        return (SpendingStore.from_url(s.redis_url, s.redis_prefix),
                ProfileStore.from_url(s.redis_url, s.redis_prefix))  # fmt: skip

    def _profile(self, user_id: str | None) -> str | None:
        """The user's profile text, None if unknown or Redis is down."""
        if user_id is None:
            return None
        spending, facts = self.user_stores
        try:
            return build_profile(spending.history(user_id), facts.get(user_id))
        except redis.exceptions.RedisError as exc:
            log.warning("advisor profile unavailable: %s", exc)
            DEGRADED_RESPONSES.labels(MODEL_NAME, "profile_unavailable").inc()
            return None

    @bentoml.api(route="/advice", input_spec=AdviceRequest)
    async def advice(
        self, session_id: str, message: str, user_id: str | None = None
    ) -> AdvicePrediction:
        """Grounded financial information for India, with sources, safety report and mode."""
        started = time.perf_counter()
        history, profile = await asyncio.gather(
            asyncio.to_thread(self.chat_history.load, session_id),
            asyncio.to_thread(self._profile, user_id),
        )
        turns = [{"role": t.role, "text": t.text, "ts": t.ts} for t in history.turns]
        result = Advice(**await self.advisor.to_async.advise(
            message=message, history=turns, profile=profile
        ))  # fmt: skip
        stored = await asyncio.to_thread(
            self.chat_history.append, session_id,
            [("user", result.user_text), ("model", result.answer_body)],
        )  # fmt: skip
        if not (history.available and stored):
            DEGRADED_RESPONSES.labels(MODEL_NAME, "history_unavailable").inc()
        if result.degraded:
            DEGRADED_RESPONSES.labels(MODEL_NAME, "llm_unavailable").inc()
        version = mlflow_version(ARGS.advisor_model)
        prediction_logging.record(
            MODEL_NAME, version,
            [{"message_chars": len(message), "user_known": profile is not None,
              "history_turns": len(history.turns)}],
            [{"mode": result.mode, "refused": result.refused, "degraded": result.degraded,
              "sources": len(result.sources), "top_score": max(result.scores, default=None)}],
            started,
        )  # fmt: skip
        return AdvicePrediction(
            answer=result.answer, sources=[Source(**s) for s in result.sources],
            safety=Safety(redacted=result.redacted, flags=result.flags, refused=result.refused),
            mode=result.mode, degraded=result.degraded,
            history_available=history.available and stored, session_id=session_id,
            model=MODEL_NAME, model_version=version,
        )  # fmt: skip
