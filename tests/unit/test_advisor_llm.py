"""The real google-genai client against a local fake Gemini server."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import pytest

from finbento.advisor.llm import (
    GeminiClient,
    GeminiConfig,
    LLMBlocked,
    LLMUnavailable,
    build_contents,
)
from tests.fake_gemini import FakeGemini, Step

SYSTEM = "You are finbento's advisor. Answer only from the context."


@dataclass
class T:
    role: str
    text: str


@pytest.fixture
def fake():
    with FakeGemini() as server:
        yield server


def make_client(fake: FakeGemini, **overrides) -> GeminiClient:
    cfg = dict(
        base_url=fake.url,
        timeout_s=0.5,
        deadline_s=3.0,
        retries=2,
        backoff_initial_s=0.02,
        backoff_max_s=0.05,
        jitter_s=0.01,
    )
    cfg.update(overrides)
    return GeminiClient("test-key", GeminiConfig(**cfg))


def test_request_carries_system_instruction_context_history_and_settings(fake):
    fake.script(Step(text="PPF has a 15-year lock-in [1]."))
    client = make_client(fake, model="gemini-2.5-flash", temperature=0.3, max_output_tokens=300)
    history = [T("user", "What is PPF?"), T("assistant", "A government savings scheme.")]
    answer = client.generate(SYSTEM, "What is its lock-in?", ["PPF lock-in is 15 years."], history)

    assert answer.text == "PPF has a 15-year lock-in [1]."
    assert answer.finish_reason == "STOP"
    assert (answer.prompt_tokens, answer.output_tokens) == (42, 7)
    assert answer.model == "gemini-2.5-flash"
    (req,) = fake.requests
    assert req.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert req.headers["x-goog-api-key"] == "test-key"
    body = req.body
    assert body["systemInstruction"]["parts"][0]["text"] == SYSTEM
    roles = [c["role"] for c in body["contents"]]
    assert roles == ["user", "model", "user"]
    last = body["contents"][-1]["parts"][0]["text"]
    assert "[1] PPF lock-in is 15 years." in last and "Question: What is its lock-in?" in last
    gen = body["generationConfig"]
    assert gen["temperature"] == 0.3 and gen["maxOutputTokens"] == 300
    categories = {s["category"] for s in body["safetySettings"]}
    assert "HARM_CATEGORY_DANGEROUS_CONTENT" in categories and len(categories) == 4
    assert {s["threshold"] for s in body["safetySettings"]} == {"BLOCK_MEDIUM_AND_ABOVE"}
    client.close()


def test_429_then_200_succeeds_after_a_retry(fake):
    fake.script(Step(status=429), Step(text="ok after retry"))
    answer = make_client(fake).generate(SYSTEM, "hi")
    assert answer.text == "ok after retry"
    assert len(fake.requests) == 2


def test_persistent_500_raises_unavailable_after_all_attempts(fake):
    fake.default = Step(status=500)
    with pytest.raises(LLMUnavailable) as info:
        make_client(fake, retries=3).generate(SYSTEM, "hi")
    assert info.value.status == 500
    assert len(fake.requests) == 4  # 1 + 3 retries


def test_client_errors_are_not_retried(fake):
    fake.default = Step(status=400)
    with pytest.raises(LLMUnavailable) as info:
        make_client(fake).generate(SYSTEM, "hi")
    assert info.value.status == 400
    assert len(fake.requests) == 1


def test_slow_server_gives_unavailable_within_the_deadline(fake):
    fake.default = Step(delay_s=5)
    client = make_client(fake, timeout_s=2.0, deadline_s=0.6)
    t0 = time.monotonic()
    with pytest.raises(LLMUnavailable, match="no answer in"):
        client.generate(SYSTEM, "hi")
    assert time.monotonic() - t0 < 1.0


def test_per_attempt_timeout_is_retried(fake):
    fake.script(Step(delay_s=5), Step(text="second try"))
    answer = make_client(fake, timeout_s=0.3).generate(SYSTEM, "hi")
    assert answer.text == "second try" and len(fake.requests) == 2


def test_unreachable_endpoint_is_unavailable():
    client = GeminiClient(
        "k",
        GeminiConfig(
            base_url="http://127.0.0.1:1",
            timeout_s=0.3,
            deadline_s=2,
            retries=1,
            backoff_initial_s=0.01,
            jitter_s=0.01,
        ),
    )
    with pytest.raises(LLMUnavailable):
        client.generate(SYSTEM, "hi")


def test_safety_block_raises_blocked(fake):
    fake.script(Step(finish_reason="SAFETY"))
    with pytest.raises(LLMBlocked) as info:
        make_client(fake).generate(SYSTEM, "hi")
    assert info.value.reason == "SAFETY"


def test_async_generate_retries_and_honours_the_deadline(fake):
    async def run():
        client = make_client(fake)
        fake.script(Step(status=503), Step(text="async ok"))
        ok = await client.agenerate(SYSTEM, "hi", ["ctx"])
        fake.script(Step(delay_s=5), Step(delay_s=5), Step(delay_s=5))
        slow = make_client(fake, timeout_s=2.0, deadline_s=0.5)
        t0 = time.monotonic()
        with pytest.raises(LLMUnavailable):
            await slow.agenerate(SYSTEM, "hi")
        waited = time.monotonic() - t0
        await client.aclose()
        await slow.aclose()
        return ok, waited

    ok, waited = asyncio.run(run())
    assert ok.text == "async ok"
    assert waited < 1.0


def test_build_contents_without_context():
    (only,) = build_contents("What is SIP?")
    assert only.role == "user" and only.parts[0].text == "Question: What is SIP?"


@pytest.mark.parametrize(
    "bad",
    [
        {"temperature": 3},
        {"retries": -1},
        {"backoff_initial_s": 0},
        {"safety_threshold": "BLOCK_EVERYTHING"},
        {"timeout_s": 0},
    ],
)
def test_config_is_validated(bad):
    with pytest.raises(ValueError, match="invalid GeminiConfig"):
        GeminiConfig(**bad)


def test_api_key_is_required():
    with pytest.raises(ValueError):
        GeminiClient("  ")
