"""The advisor's Gemini client: one grounded answer per call, with retries and a hard deadline.

Built on ``google-genai`` (``google-generativeai`` is end-of-life). Retries use the library's own
``HttpRetryOptions`` (tenacity: exponential backoff with jitter on 408, 429 and 5xx, and on httpx
timeouts and connection errors); the overall deadline is enforced here, around all attempts. Every
failure (HTTP error after the retries, timeout, connection refused, malformed answer) becomes
:class:`LLMUnavailable`, which the service turns into its offline answer. An answer that Gemini's
own safety filters blocked raises :class:`LLMBlocked` instead.

API reference: https://googleapis.github.io/python-genai/ and
https://ai.google.dev/api/generate-content
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from google import genai
from google.genai import errors, types

#: HTTP statuses retried with backoff: request timeout, rate limit, server errors.
RETRY_STATUSES = (408, 429, 500, 502, 503, 504)
#: Gemini's harm categories that ``safety_threshold`` applies to.
HARM_CATEGORIES = (
    types.HarmCategory.HARM_CATEGORY_HARASSMENT,
    types.HarmCategory.HARM_CATEGORY_HATE_SPEECH,
    types.HarmCategory.HARM_CATEGORY_SEXUALLY_EXPLICIT,
    types.HarmCategory.HARM_CATEGORY_DANGEROUS_CONTENT,
)
_BLOCKED_REASONS = {"SAFETY", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"}


class LLMError(RuntimeError):
    """Base class of the advisor LLM's errors."""


class LLMUnavailable(LLMError):
    """Gemini gave no usable answer in time (after retries); serve the offline answer.

    Attributes:
        status: the last HTTP status Gemini returned, or None (timeout, connection error).
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LLMBlocked(LLMError):
    """Gemini's safety filters blocked the prompt or the answer; serve the refusal message.

    Attributes:
        reason: the block or finish reason Gemini gave (e.g. ``SAFETY``).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"Gemini blocked the answer: {reason}")
        self.reason = reason


class TurnLike(Protocol):
    """A chat turn: ``role`` is ``"user"`` or ``"model"`` (``"assistant"`` is read as model)."""

    role: str
    text: str


@dataclass(frozen=True)
class GeminiConfig:
    """How the advisor calls Gemini.

    Attributes:
        model: Gemini model name, e.g. ``gemini-2.5-flash``.
        temperature: sampling temperature, 0-2.
        max_output_tokens: cap on the answer's tokens (thinking tokens count too on 2.5 models).
        timeout_s: per-attempt HTTP timeout, seconds.
        deadline_s: hard limit on the whole call (all attempts and backoff), seconds.
        retries: extra attempts after the first on 408/429/5xx, timeouts and connection errors.
        backoff_initial_s: first backoff, seconds (> 0); doubles each retry.
        backoff_max_s: longest backoff, seconds.
        jitter_s: random extra 0-``jitter_s`` seconds added to each backoff (> 0).
        base_url: API endpoint; None = Google's (``https://generativelanguage.googleapis.com``).
        thinking_budget: thinking tokens for 2.5 models; 0 turns thinking off (lower latency,
            not allowed on ``-pro`` models), None leaves the model's default.
        safety_threshold: Gemini ``HarmBlockThreshold`` for every harm category.
    """

    model: str = "gemini-2.5-flash"
    temperature: float = 0.2
    max_output_tokens: int = 1024
    timeout_s: float = 20.0
    deadline_s: float = 45.0
    retries: int = 2
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 8.0
    jitter_s: float = 0.5
    base_url: str | None = None
    thinking_budget: int | None = 0
    safety_threshold: str = "BLOCK_MEDIUM_AND_ABOVE"

    def __post_init__(self) -> None:
        checks = {
            "model": bool(self.model),
            "temperature": 0.0 <= self.temperature <= 2.0,
            "max_output_tokens": self.max_output_tokens >= 1,
            "timeout_s": self.timeout_s > 0,
            "deadline_s": self.deadline_s > 0,
            "retries": self.retries >= 0,
            # the library reads 0 as "use its default" (1 s), so 0 is refused here
            "backoff_initial_s": self.backoff_initial_s > 0,
            "backoff_max_s": self.backoff_max_s >= self.backoff_initial_s,
            "jitter_s": self.jitter_s > 0,
            "safety_threshold": self.safety_threshold in types.HarmBlockThreshold.__members__,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid GeminiConfig field(s): {', '.join(bad)} ({self})")


@dataclass(frozen=True)
class LLMAnswer:
    """One answer from Gemini.

    Attributes:
        text: the answer (not yet through the output safety rules).
        model: the model version Gemini reports (or the configured name).
        finish_reason: e.g. ``STOP``, ``MAX_TOKENS``.
        prompt_tokens: input tokens billed, or None if not reported.
        output_tokens: output tokens billed, or None if not reported.
        latency_s: wall time of the whole call, retries included.
    """

    text: str
    model: str
    finish_reason: str
    prompt_tokens: int | None
    output_tokens: int | None
    latency_s: float


def build_contents(
    message: str, context: Sequence[str] = (), history: Iterable[TurnLike] = ()
) -> list[types.Content]:
    """The ``contents`` of a request: earlier turns, then the question with its context.

    Args:
        message: the user's (already redacted) question.
        context: retrieved knowledge-base passages, best first; numbered ``[1]``, ``[2]``... so the
            answer can cite them.
        history: earlier turns, oldest first.

    Returns:
        Gemini contents: one ``Content`` per turn (roles ``user``/``model``), the user's last.
    """
    contents = [
        types.Content(
            role="model" if t.role in ("model", "assistant") else "user",
            parts=[types.Part(text=t.text)],
        )
        for t in history
        if t.text
    ]
    if context:
        passages = "\n\n".join(f"[{i}] {p.strip()}" for i, p in enumerate(context, 1))
        prompt = f"Context:\n{passages}\n\nQuestion: {message}"
    else:
        prompt = f"Question: {message}"
    contents.append(types.Content(role="user", parts=[types.Part(text=prompt)]))
    return contents


class GeminiClient:
    """Asks Gemini for a grounded answer.

    Args:
        api_key: Gemini API key (the service reads ``FINBENTO_GEMINI_API_KEY``).
        config: model, sampling, timeouts and retries.

    Raises:
        ValueError: if ``api_key`` is empty.
    """

    def __init__(self, api_key: str, config: GeminiConfig | None = None) -> None:
        if not api_key or not api_key.strip():
            raise ValueError("a Gemini API key is required")
        self.config = config or GeminiConfig()
        cfg = self.config
        retry = types.HttpRetryOptions(
            attempts=cfg.retries + 1,
            initial_delay=cfg.backoff_initial_s,
            max_delay=cfg.backoff_max_s,
            exp_base=2.0,
            jitter=cfg.jitter_s,
            http_status_codes=list(RETRY_STATUSES),
        )
        http = types.HttpOptions(
            base_url=cfg.base_url,
            timeout=max(1, round(cfg.timeout_s * 1000)),
            retry_options=retry,
            # httpx (not aiohttp) for async calls too, so timeouts and connection errors retry
            async_client_args={"transport": httpx.AsyncHTTPTransport()},
        )
        self._client = genai.Client(api_key=api_key.strip(), http_options=http)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def request_config(self, system_prompt: str) -> types.GenerateContentConfig:
        """The generation config: system instruction, sampling, Gemini's safety settings."""
        cfg = self.config
        threshold = types.HarmBlockThreshold[cfg.safety_threshold]
        return types.GenerateContentConfig(
            system_instruction=system_prompt,
            temperature=cfg.temperature,
            max_output_tokens=cfg.max_output_tokens,
            safety_settings=[
                types.SafetySetting(category=c, threshold=threshold) for c in HARM_CATEGORIES
            ],
            thinking_config=(
                None
                if cfg.thinking_budget is None
                else types.ThinkingConfig(thinking_budget=cfg.thinking_budget)
            ),
        )

    async def agenerate(
        self,
        system_prompt: str,
        message: str,
        context: Sequence[str] = (),
        history: Iterable[TurnLike] = (),
    ) -> LLMAnswer:
        """Answer ``message`` (async), within ``config.deadline_s``.

        Args:
            system_prompt: the advisor's instructions (sent as ``system_instruction``).
            message: the user's redacted question.
            context: retrieved passages, best first.
            history: earlier turns, oldest first.

        Returns:
            The answer.

        Raises:
            LLMUnavailable: on any failure after the retries, or when the deadline passes.
            LLMBlocked: if Gemini's safety filters blocked the prompt or the answer.
        """
        start = time.monotonic()
        contents = build_contents(message, context, history)
        try:
            async with asyncio.timeout(self.config.deadline_s):
                response = await self._client.aio.models.generate_content(
                    model=self.config.model,
                    contents=contents,
                    config=self.request_config(system_prompt),
                )
        except TimeoutError as e:
            raise LLMUnavailable(f"Gemini gave no answer in {self.config.deadline_s} s") from e
        except Exception as e:  # every other failure means: no answer from Gemini
            raise _unavailable(e) from e
        return self._answer(response, time.monotonic() - start)

    def generate(
        self,
        system_prompt: str,
        message: str,
        context: Sequence[str] = (),
        history: Iterable[TurnLike] = (),
    ) -> LLMAnswer:
        """Answer ``message`` (blocking), within ``config.deadline_s``; see :meth:`agenerate`.

        The call runs in a worker thread so that the deadline holds whatever the network does; a
        call given up on finishes in the background, bounded by the per-attempt timeout and the
        retries.
        """
        start = time.monotonic()
        contents = build_contents(message, context, list(history))
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="gemini")
        future = self._pool.submit(
            self._client.models.generate_content,
            model=self.config.model,
            contents=contents,
            config=self.request_config(system_prompt),
        )
        try:
            response = future.result(timeout=self.config.deadline_s)
        except concurrent.futures.TimeoutError as e:
            future.cancel()
            raise LLMUnavailable(f"Gemini gave no answer in {self.config.deadline_s} s") from e
        except Exception as e:
            raise _unavailable(e) from e
        return self._answer(response, time.monotonic() - start)

    def _answer(self, response: types.GenerateContentResponse, latency_s: float) -> LLMAnswer:
        feedback = response.prompt_feedback
        if feedback is not None and feedback.block_reason is not None:
            raise LLMBlocked(_name(feedback.block_reason))
        if not response.candidates:
            raise LLMUnavailable("Gemini returned no candidates")
        candidate = response.candidates[0]
        reason = _name(candidate.finish_reason) if candidate.finish_reason else "STOP"
        if reason in _BLOCKED_REASONS:
            raise LLMBlocked(reason)
        text = (response.text or "").strip()
        if not text:
            raise LLMUnavailable(f"Gemini returned an empty answer (finish reason {reason})")
        usage = response.usage_metadata
        return LLMAnswer(
            text=text,
            model=response.model_version or self.config.model,
            finish_reason=reason,
            prompt_tokens=usage.prompt_token_count if usage else None,
            output_tokens=usage.candidates_token_count if usage else None,
            latency_s=latency_s,
        )

    def close(self) -> None:
        """Release the worker threads and the blocking client's HTTP connections."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self._client.close()

    async def aclose(self) -> None:
        """Release the async client's HTTP connections (call on the loop that used them)."""
        await self._client.aio.aclose()


def _name(value: Any) -> str:
    return str(getattr(value, "value", value))


def _unavailable(error: BaseException) -> LLMUnavailable:
    if isinstance(error, LLMError):
        return LLMUnavailable(str(error))
    if isinstance(error, errors.APIError):
        return LLMUnavailable(f"Gemini API error {error.code} {error.status}", status=error.code)
    if isinstance(error, httpx.TimeoutException):
        return LLMUnavailable("Gemini timed out")
    return LLMUnavailable(f"Gemini call failed: {type(error).__name__}: {error}")
