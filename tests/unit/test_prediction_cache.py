"""The Redis prediction cache (services/prediction_cache.py), against the real Redis."""

import asyncio
import uuid

import pytest
import redis
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from finbento.settings import get_settings
from services import prediction_cache
from services.prediction_cache import PredictionCache, cache_key

URL = "redis://127.0.0.1:6379/0"


def redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(URL, socket_timeout=1).ping())
    except redis.exceptions.RedisError:
        return False


pytestmark = pytest.mark.skipif(not redis_up(), reason="no Redis on 127.0.0.1:6379")


@pytest.fixture
def cache():
    c = PredictionCache(URL, f"finbento-test-{uuid.uuid4().hex[:8]}", ttl_s=60)
    yield c
    c.clear()


def count(model: str, result: str) -> float:
    labels = {"model_name": model, "result": result}
    return REGISTRY.get_sample_value("ml_prediction_cache_requests_total", labels) or 0.0


class Model:
    """Doubles its inputs and remembers which it was asked for."""

    def __init__(self):
        self.asked: list[list[int]] = []

    def compute(self, items):
        async def run(missing):
            self.asked.append(missing)
            return [{"y": items[i]["x"] * 2} for i in missing]

        return run


def test_keys_ignore_field_order_and_differ_by_version_and_model():
    a = cache_key("p", "m", "1", {"x": 1, "y": [1, 2]})
    assert a == cache_key("p", "m", "1", {"y": [1, 2], "x": 1})
    assert a != cache_key("p", "m", "2", {"x": 1, "y": [1, 2]})
    assert a != cache_key("p", "n", "1", {"x": 1, "y": [1, 2]})
    assert a.startswith("p:pcache:m:1:") and len(a.rsplit(":", 1)[1]) == 64


def test_only_misses_are_computed_and_answers_keep_input_order(cache):
    model, items = Model(), [{"x": i} for i in range(5)]
    hits = count("cache-test", "hit")
    first = asyncio.run(cache.cached("cache-test", "1", items[:3], model.compute(items[:3])))
    both = asyncio.run(cache.cached("cache-test", "1", items, model.compute(items)))
    assert first == [{"y": 0}, {"y": 2}, {"y": 4}]
    assert both == [{"y": 2 * i} for i in range(5)]
    assert model.asked == [[0, 1, 2], [3, 4]]  # the second call computed the two new ones only
    assert count("cache-test", "hit") - hits == 3
    again = Model()
    asyncio.run(cache.cached("cache-test", "2", items, again.compute(items)))
    assert again.asked == [[0, 1, 2, 3, 4]]  # a new version reads nothing of the old one


def test_answers_expire_with_the_ttl(cache):
    items = [{"x": 1}]
    asyncio.run(cache.cached("cache-test", "1", items, Model().compute(items)))
    ttl = redis.Redis.from_url(URL).ttl(cache_key(cache.prefix, "cache-test", "1", items[0]))
    assert 0 < ttl <= 60


def test_redis_down_scores_everything_counts_errors_and_pauses_the_cache():
    down = PredictionCache("redis://127.0.0.1:1/0", "finbento-test-down", ttl_s=60)
    model, items = Model(), [{"x": 1}, {"x": 2}]
    errors = count("cache-down", "error")
    assert asyncio.run(down.cached("cache-down", "1", items, model.compute(items))) == [
        {"y": 2}, {"y": 4}]  # fmt: skip
    assert count("cache-down", "error") - errors == 2
    assert down._paused_until > 0  # the next calls skip Redis for PAUSE_S
    asyncio.run(down.cached("cache-down", "1", items, model.compute(items)))
    assert model.asked == [[0, 1], [0, 1]]


def test_ttl_zero_turns_the_cache_off(cache):
    off = PredictionCache(URL, cache.prefix, ttl_s=0)
    model, items = Model(), [{"x": 1}]
    for _ in range(2):
        asyncio.run(off.cached("cache-test", "1", items, model.compute(items)))
    assert model.asked == [[0], [0]]


def test_clear_deletes_one_model_or_all_and_nothing_else(cache):
    r = redis.Redis.from_url(URL)
    other = f"{cache.prefix}:features:c1"
    r.set(other, "kept", ex=60)
    for model in ("a", "b"):
        items = [{"x": 1}, {"x": 2}]
        asyncio.run(cache.cached(model, "1", items, Model().compute(items)))
    assert cache.clear("a") == 2
    assert cache.clear() == 2
    assert r.get(other) == b"kept"
    r.delete(other)


def test_clear_route_needs_the_admin_token(monkeypatch, cache):
    monkeypatch.setattr(prediction_cache, "_CACHE", cache)
    client = TestClient(prediction_cache.app)
    monkeypatch.setenv("FINBENTO_ADMIN_TOKEN", "")
    get_settings.cache_clear()
    assert client.post("/clear").status_code == 403
    monkeypatch.setenv("FINBENTO_ADMIN_TOKEN", "s3cret")
    get_settings.cache_clear()
    try:
        assert client.post("/clear").status_code == 401
        assert client.post("/clear", headers={"Authorization": "Bearer nope"}).status_code == 401
        ok = client.post("/clear?model=fraud", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json() == {"deleted": 0, "model": "fraud"}
        bad = client.post("/clear?model=*", headers={"Authorization": "Bearer s3cret"})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "model"]
    finally:
        monkeypatch.delenv("FINBENTO_ADMIN_TOKEN")
        get_settings.cache_clear()
