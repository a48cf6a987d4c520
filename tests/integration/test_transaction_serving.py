"""Card-transaction routes end to end: real Redis (a private one we can stop), bentoml serve."""

import json
import shutil
import subprocess
import time
import uuid

import httpx
import numpy as np
import pandas as pd
import pytest
import redis

from finbento import bentos
from finbento.datasets import to_transactions
from finbento.feature_store import TransactionStore
from finbento.features.transactions import FEATURES, offline_features, online_features
from finbento.fraud import FraudScorer
from finbento.serving import free_port, start_bento_server, stop_bento_server
from trainers import fraud

pytestmark = pytest.mark.integration
DAY = "2018-08-20"


@pytest.fixture(scope="module")
def redis_server():
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not installed: cannot run a Redis this test may stop")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL)  # fmt: skip
    client = redis.Redis(port=port)
    for _ in range(50):
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            time.sleep(0.1)
    yield {"url": f"redis://127.0.0.1:{port}/0", "proc": proc}
    proc.kill()
    proc.wait()


@pytest.fixture(scope="module")
def served(trained, redis_server):
    tag = bentos.build("risk", trained.tags, trained.versions)
    p = fraud.load_split(trained.settings, sample=60000)
    history = p.df[p.df.tx_datetime < DAY]
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    store = TransactionStore.from_url(redis_server["url"], prefix)
    store.ingest(to_transactions(history), history.tx_fraud.astype(bool))
    port = free_port()
    proc = start_bento_server(tag, port, env={"FINBENTO_REDIS_URL": redis_server["url"],
                                              "FINBENTO_REDIS_PREFIX": prefix})  # fmt: skip
    yield {
        "url": f"http://127.0.0.1:{port}",
        "prepared": p,
        "store": store,
        "proc": proc,
        "fraud_model": trained.models["fraud"],
    }
    stop_bento_server(proc)


def items(df: pd.DataFrame) -> list[dict]:
    return [{"transaction_id": r.transaction_id, "tx_datetime": r.tx_datetime.isoformat(),
             "customer_id": r.customer_id, "terminal_id": r.terminal_id,
             "tx_amount": float(r.tx_amount)} for r in df.itertuples()]  # fmt: skip


def post(served, path, body):
    return httpx.post(served["url"] + path, json=body, timeout=30)


def next_day(served) -> pd.DataFrame:
    df = served["prepared"].df
    return df[(df.tx_datetime >= DAY) & (df.tx_datetime < "2018-08-21")]


def test_served_fraud_scores_equal_the_offline_pipeline(served):
    day = next_day(served)
    assert len(day) > 200
    shuffled = day.sample(frac=1, random_state=0)
    r = post(served, "/predict/fraud/batch", {"transactions": items(shuffled), "ingest": False})
    assert r.status_code == 200, r.text
    got = {p["transaction_id"]: p["fraud_probability"] for p in r.json()["predictions"]}
    assert [p["transaction_id"] for p in r.json()["predictions"]] == list(shuffled.transaction_id)
    assert not any(p["degraded"] for p in r.json()["predictions"])
    scorer = FraudScorer.load(served["fraud_model"].path)
    offline = offline_features(served["prepared"].df).loc[day.index]
    expected = scorer.probability(offline.to_numpy(np.float32))
    np.testing.assert_allclose([got[t] for t in day.transaction_id], expected, rtol=1e-5, atol=1e-6)


def test_ingest_is_idempotent_over_http(served):
    batch = items(next_day(served).head(40))
    first = post(served, "/transactions", {"transactions": batch}).json()
    again = post(served, "/transactions", {"transactions": batch}).json()
    assert first == {"ingested": 40, "duplicates": 0, "error": None}
    assert again == {"ingested": 0, "duplicates": 40, "error": None}


def test_scoring_ingests_unless_told_not_to(served):
    row = next_day(served).iloc[[100]]
    txid = row.transaction_id.iloc[0]
    post(served, "/predict/anomaly", {"transaction": items(row)[0], "ingest": False})
    assert served["store"].known([txid]) == set()
    r = post(served, "/predict/fraud", {"transaction": items(row)[0]})
    assert r.status_code == 200 and r.json()["model"] == "fraud" and r.json()["model_version"]
    assert served["store"].known([txid]) == {txid}


def test_feedback_moves_terminal_risk(served):
    day = next_day(served)
    row = day.iloc[-1]
    post(served, "/transactions", {"transactions": items(day.iloc[[-1]])})
    later = to_transactions(
        day.iloc[[-1]].assign(
            tx_datetime=row.tx_datetime + pd.Timedelta(days=8), transaction_id="later"
        )
    )
    risk = FEATURES.index("terminal_risk_30d")
    store = served["store"]
    before = online_features(later, *store.histories(later))[0, risk]
    r = post(
        served,
        "/feedback/fraud",
        {
            "labels": [
                {"transaction_id": row.transaction_id, "is_fraud": True},
                {"transaction_id": "nope", "is_fraud": True},
            ]
        },
    )
    assert r.json() == {"recorded": 1, "unknown": ["nope"], "error": None}
    after = online_features(later, *store.histories(later))[0, risk]
    assert after > before


def test_anomaly_flags_a_large_amount_for_a_known_customer(served):
    row = next_day(served).iloc[[5]].assign(tx_amount=2000.0, transaction_id="big-one")
    p = post(served, "/predict/anomaly", {"transaction": items(row)[0], "ingest": False}).json()
    assert p["is_anomaly"] and not p["degraded"]
    assert p["reasons"][0]["robust_z"] > 3
    assert {r["feature"] for r in p["reasons"]} & {"tx_amount", "amount_to_customer_avg_30d"}


@pytest.mark.parametrize(
    ("change", "field", "kind"),
    [
        ({"tx_amount": -1}, "tx_amount", "greater_than_equal"),
        ({"tx_datetime": "last tuesday"}, "tx_datetime", "datetime_from_date_parsing"),
        ({"customer_id": "a b"}, "customer_id", "string_pattern_mismatch"),
        ({"extra": 1}, "extra", "extra_forbidden"),
    ],
)
def test_bad_transactions_are_400_naming_the_field(served, change, field, kind):
    item = {**items(next_day(served).head(1))[0], **change}
    r = post(served, "/predict/fraud", {"transaction": item})
    assert r.status_code == 400
    err = r.json()["detail"][0]
    assert err["loc"] == ["transaction", field] and err["type"] == kind


def test_redis_down_mid_way_degrades_and_never_500s(served, redis_server):
    """Must run last in this module: it stops the private Redis."""
    redis_server["proc"].kill()
    redis_server["proc"].wait()
    item = items(next_day(served).iloc[[7]])[0]
    r = post(served, "/predict/fraud", {"transaction": item})
    assert r.status_code == 200 and r.json()["degraded"] is True
    r = post(served, "/predict/anomaly/batch", {"transactions": [item, item]})
    assert r.status_code == 200 and all(p["degraded"] for p in r.json()["predictions"])
    r = post(served, "/transactions", {"transactions": [item]})
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert "nothing was stored" in json.dumps(r.json())
    metrics = httpx.get(served["url"] + "/metrics").text
    assert (
        'ml_degraded_responses_total{model_name="fraud",reason="feature_store_unavailable"}'
        in metrics
    )
    assert served["proc"].poll() is None
    assert post(served, "/predict/credit-risk/batch", {"applicants": []}).status_code == 422
