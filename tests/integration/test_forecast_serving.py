"""The forecast Bento over real HTTP: spending forecasts from sent or stored history, cached."""

import contextlib
import json
import uuid

import httpx
import pytest
import redis

from finbento import bentos
from finbento.serving import free_port, start_bento_server, stop_bento_server
from finbento.spending_store import SpendingStore

pytestmark = pytest.mark.integration
PREFIX = f"finbento-test-{uuid.uuid4().hex[:8]}"


def monthly_history(months: int = 30) -> list[dict]:
    """A plausible household's spending: groceries every month, transport, a yearly festival."""
    rows = []
    for i in range(months):
        year, month = 2016 + i // 12, 1 + i % 12
        rows.append({"date": f"{year}-{month:02d}-05", "amount": 6000 + 300 * (i % 3),
                     "category": "Groceries"})  # fmt: skip
        rows.append({"date": f"{year}-{month:02d}-12", "amount": 1500 + 40 * i,
                     "category": "Transport"})  # fmt: skip
        if month == 10:
            rows.append({"date": f"{year}-10-20", "amount": 9000, "category": "Shopping"})
    return rows


@pytest.fixture(scope="module")
def served(trained, tmp_path_factory):
    tag = bentos.build("forecast", trained.tags, trained.versions)
    port = free_port()
    log = tmp_path_factory.mktemp("logs") / "serve-forecast.log"
    proc = start_bento_server(tag, port, {"FINBENTO_REDIS_PREFIX": PREFIX}, log_file=log)
    yield {"url": f"http://127.0.0.1:{port}", "tag": tag, "trained": trained}
    stop_bento_server(proc)
    with contextlib.suppress(redis.exceptions.RedisError):  # no Redis: nothing to clean
        SpendingStore.from_url("redis://127.0.0.1:6379/0", PREFIX).clear()


def post(served, body):
    return httpx.post(served["url"] + "/predict/spending", content=json.dumps(body),
                      headers={"Content-Type": "application/json"}, timeout=60)  # fmt: skip


def test_forecast_from_sent_history_is_monthly_with_intervals_and_cached(served):
    body = {"user_id": "u1", "months": 6, "history": monthly_history()}
    first = post(served, body)
    assert first.status_code == 200, first.text
    answer = first.json()
    assert answer["model"] == "spending" and not answer["cached"]
    assert answer["model_version"] == served["trained"].versions["spending"]
    categories = {row["category"] for row in answer["forecast"]}
    assert {"total", "Groceries"} <= categories
    total = [row for row in answer["forecast"] if row["category"] == "total"]
    assert [row["month"] for row in total] == ["2018-07", "2018-08", "2018-09", "2018-10",
                                               "2018-11", "2018-12"]  # fmt: skip
    for row in answer["forecast"]:
        assert row["yhat_lower"] <= row["yhat"] <= row["yhat_upper"]
    assert set(answer["method"]) == categories and 0 < answer["interval_width"] < 1
    again = post(served, body)
    assert again.status_code == 200 and again.json()["cached"]
    assert again.json()["forecast"] == answer["forecast"]


def test_one_category(served):
    r = post(served, {"user_id": "u1", "months": 3, "category": "Groceries",
                      "history": monthly_history()})  # fmt: skip
    assert r.status_code == 200, r.text
    assert {row["category"] for row in r.json()["forecast"]} == {"Groceries"}
    assert len(r.json()["forecast"]) == 3


def test_stored_history_and_unknown_user(served):
    import pandas as pd

    store = SpendingStore.from_url("redis://127.0.0.1:6379/0", PREFIX)
    try:
        store.set_history("stored-user", pd.DataFrame(monthly_history(24)))
    except redis.exceptions.RedisError as exc:
        pytest.skip(f"no Redis at 127.0.0.1:6379: {exc}")
    r = post(served, {"user_id": "stored-user", "months": 2})
    assert r.status_code == 200, r.text
    missing = post(served, {"user_id": "nobody", "months": 2})
    assert missing.status_code == 404 and "history" in missing.text


def item(**overrides: object) -> dict:
    return {"date": "2017-01-01", "amount": 1.0, "category": "Groceries", **overrides}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": "u", "months": 0, "history": [item()]}, "months"),
        ({"user_id": "u", "months": 13}, "months"),
        ({"user_id": "u", "months": 3, "history": []}, "history"),
        ({"user_id": "u", "months": 3, "history": [item(date="2017-31-01")]}, "date"),
        ({"user_id": "u", "months": 3, "history": [item(amount=-5)]}, "amount"),
        ({"user_id": "u", "months": 3, "history": [item(amount="NaN")]}, "amount"),
        ({"user_id": "bad id!", "months": 3}, "user_id"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(served, body, field):
    r = post(served, body)
    assert 400 <= r.status_code < 500, r.text
    assert field in r.text


def test_sent_history_is_ingested_for_later_requests_unless_told_not_to(served):
    r = post(served, {"user_id": "ingesting-user", "months": 2, "history": monthly_history(14)})
    assert r.status_code == 200, r.text
    later = post(served, {"user_id": "ingesting-user", "months": 2})
    if later.status_code == 503:
        pytest.skip("no Redis at 127.0.0.1:6379")
    assert later.status_code == 200, later.text
    assert later.json()["forecast"][0]["month"] == "2017-03"  # 14 months from 2016-01
    r = post(served, {"user_id": "private-user", "months": 2, "history": monthly_history(14),
                      "ingest": False})  # fmt: skip
    assert r.status_code == 200
    assert post(served, {"user_id": "private-user", "months": 2}).status_code == 404


@pytest.fixture(scope="module")
def served_without_redis(trained, tmp_path_factory):
    tag = bentos.build("forecast", trained.tags, trained.versions)
    port = free_port()
    log = tmp_path_factory.mktemp("logs") / "serve-forecast-no-redis.log"
    proc = start_bento_server(tag, port, {"FINBENTO_REDIS_URL": "redis://127.0.0.1:1/0"},
                              log_file=log)  # fmt: skip
    yield {"url": f"http://127.0.0.1:{port}"}
    stop_bento_server(proc)


def test_redis_down_sent_history_still_answers_stored_history_is_503(served_without_redis):
    body = {"user_id": "u1", "months": 3, "history": monthly_history()}
    r = post(served_without_redis, body)
    assert r.status_code == 200, r.text
    assert not r.json()["cached"] and len(r.json()["forecast"]) > 0
    assert not post(served_without_redis, body).json()["cached"]  # nothing cached either
    stored = post(served_without_redis, {"user_id": "u1", "months": 3})
    assert stored.status_code == 503 and "history" in stored.text
    assert stored.headers["Retry-After"] == "5"
    metrics = httpx.get(served_without_redis["url"] + "/metrics", timeout=10).text
    assert 'ml_degraded_responses_total{model_name="spending"' in metrics
