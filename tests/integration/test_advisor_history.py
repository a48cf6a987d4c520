"""The advisor's chat history against the real Redis on 127.0.0.1:6379, and without Redis."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from finbento.advisor.history import ChatHistory

pytestmark = pytest.mark.integration
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def store():
    s = ChatHistory.from_url(
        REDIS_URL, prefix=f"finbento-test-{uuid.uuid4().hex[:8]}", max_turns=4, ttl_s=600
    )
    try:
        s.r.ping()
    except redis.exceptions.RedisError as exc:
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")
    yield s
    s.clear()
    assert not list(s.r.scan_iter(match=f"{s.base}:*"))


def test_round_trip_key_layout_and_ttl(store):
    assert store.append("s-1", [("user", "What is PPF?"), ("model", "A savings scheme.")], ts=100)
    got = store.load("s-1")
    assert got.available
    assert [(t.role, t.text, t.ts) for t in got.turns] == [
        ("user", "What is PPF?", 100.0),
        ("model", "A savings scheme.", 100.0),
    ]
    key = store.key("s-1")
    assert key == f"{store.base}:h:s-1" and store.base.endswith(":advisor:v1")
    assert 0 < store.r.ttl(key) <= 600
    assert store.load("other").turns == []


def test_trimmed_to_the_newest_turns_and_ttl_refreshed(store):
    for i in range(5):
        store.append("s-2", [("user", f"q{i}"), ("model", f"a{i}")])
    store.r.expire(store.key("s-2"), 5)
    store.append("s-2", [("user", "q5")])
    texts = [t.text for t in store.load("s-2").turns]
    assert texts == ["a3", "q4", "a4", "q5"]
    assert store.r.ttl(store.key("s-2")) > 5
    assert [t.text for t in store.load("s-2", limit=2).turns] == ["a4", "q5"]


def test_sanitize_runs_on_every_stored_text(store):
    store.sanitize = lambda text: text.replace("9876543210", "[PHONE]")
    store.append("s-3", [("user", "call me on 9876543210")])
    raw = store.r.lrange(store.key("s-3"), 0, -1)
    assert "9876543210" not in raw[0] and "[PHONE]" in raw[0]


def test_odd_session_ids_are_hashed_and_malformed_rows_skipped(store):
    key = store.key("a b*c:d")
    assert "*" not in key and " " not in key and key.startswith(f"{store.base}:h:sha256-")
    store.append("a b*c:d", [("user", "hello")])
    store.r.rpush(key, "not json", '{"role": "system", "text": "x", "ts": 1}')
    assert [t.text for t in store.load("a b*c:d").turns] == ["hello"]


def test_delete_and_bad_role(store):
    store.append("s-4", [("user", "hi")])
    assert store.delete("s-4") and store.load("s-4").turns == []
    with pytest.raises(ValueError):
        store.append("s-4", [("system", "nope")])


def test_unreachable_redis_degrades_to_stateless():
    down = ChatHistory.from_url("redis://127.0.0.1:1/0", timeout_s=0.2)
    t0 = time.monotonic()
    got = down.load("s-1")
    assert got.turns == [] and got.available is False
    assert down.append("s-1", [("user", "hi")]) is False
    assert down.delete("s-1") is False
    assert time.monotonic() - t0 < 2.0
