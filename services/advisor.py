"""``advisor`` model service: safety rules, retrieval and Gemini (or offline answers).

The BentoML model is the advisor directory (index, encoder, rules, prompt: finbento/advisor/).
Gemini is used when ``FINBENTO_GEMINI_API_KEY`` is set, else every answer is offline (extractive,
from the knowledge base). Not batched: each answer is one Gemini call (seconds) or one small
encoder run (milliseconds), and nothing is shared between two users' questions; retrieval runs in
a worker thread so the event loop keeps serving while Gemini is awaited.
"""

from __future__ import annotations

import bentoml

from finbento.advisor.advisor import Advisor
from finbento.model_integrity import verified_path
from finbento.settings import Settings, get_settings
from services.args import ARGS
from services.runtime import service_options, tune_gc


def gemini_client(settings: Settings):
    """A Gemini client from the settings, or None without an API key (offline mode)."""
    if settings.gemini_api_key is None or not settings.gemini_api_key.get_secret_value():
        return None
    from finbento.advisor.llm import GeminiClient, GeminiConfig

    config = GeminiConfig(
        model=settings.gemini_model, temperature=settings.gemini_temperature,
        timeout_s=settings.gemini_timeout_s, deadline_s=settings.gemini_deadline_s,
        retries=settings.gemini_retries, base_url=settings.gemini_base_url,
    )  # fmt: skip
    return GeminiClient(settings.gemini_api_key.get_secret_value(), config)


@bentoml.service(**service_options("advisor", timeout_s=60))
class AdvisorModel:
    """The advisor, one endpoint."""

    model_ref = bentoml.models.BentoModel(ARGS.advisor_model)

    def __init__(self) -> None:
        self.advisor = Advisor.load(
            verified_path(self.model_ref), llm=gemini_client(get_settings()), threads=1
        )
        tune_gc()

    @bentoml.api
    async def advise(self, message: str, history: list[dict], profile: str | None = None) -> dict:
        """One message (raw), earlier turns (``{"role", "text"}``) and a profile -> the advice.

        Returns:
            the fields of :class:`finbento.advisor.advisor.Advice`.
        """
        from dataclasses import asdict

        from finbento.advisor.history import Turn

        turns = [Turn(t["role"], t["text"], float(t.get("ts", 0))) for t in history]
        return asdict(await self.advisor.advise(message, turns, profile))
