"""The Redis feature store against the real Redis on 127.0.0.1:6379."""

import time
import uuid

import numpy as np
import pandas as pd
import pytest
import redis

from finbento.datasets import load_transactions, to_transactions
from finbento.feature_store import CUSTOMER_TTL_S, TransactionStore
from finbento.features.transactions import FEATURES, offline_features, online_features
from finbento.settings import Settings

pytestmark = pytest.mark.integration
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def store():
    s = TransactionStore.from_url(REDIS_URL, prefix=f"finbento-test-{uuid.uuid4().hex[:8]}")
    try:
        s.r.ping()
    except redis.exceptions.RedisError as exc:
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")
    yield s
    s.clear()


@pytest.fixture(scope="module")
def history():
    df = load_transactions(Settings().transactions_data_path)
    df = df[(df.tx_datetime >= "2018-05-20") & (df.tx_datetime < "2018-07-03")]
    return df.reset_index(drop=True)


def test_online_features_from_redis_equal_offline(store, history):
    df = history
    offline = offline_features(df)
    past = df[df.tx_datetime < "2018-07-01"]
    assert store.ingest(to_transactions(past), past.tx_fraud.astype(bool)) == len(past)
    new = df[df.tx_datetime >= "2018-07-01"]
    # only rows whose full 37-day history is in the slice are comparable
    assert len(new) > 3000
    for idx in np.array_split(new.index.to_numpy(), 8):
        txs = to_transactions(df.loc[idx])
        customers, terminals = store.histories(txs)
        online = online_features(txs, customers, terminals)
        store.ingest(txs)
        np.testing.assert_allclose(online, offline.loc[idx].to_numpy(), rtol=1e-9, atol=1e-9)


def test_ingest_is_idempotent_and_keys_expire(store, history):
    txs = to_transactions(history.tail(50))
    assert store.ingest(txs) == 0  # stored by the previous test
    key = store._key("c", txs[0].customer_id)
    assert 0 < store.r.ttl(key) <= CUSTOMER_TTL_S
    assert store.r.zcard(key) == len(set(store.r.zrange(key, 0, -1)))


def test_feedback_moves_terminal_risk_after_the_label_delay(store):
    t0 = pd.Timestamp("2018-09-01").timestamp()
    from finbento.features.transactions import Transaction

    txs = [Transaction(f"fb-{i}", t0 + i * 60, f"fb-c{i}", "fb-terminal", 10.0) for i in range(4)]
    store.ingest(txs)
    later = Transaction("fb-late", t0 + 8 * 86400, "fb-c9", "fb-terminal", 10.0)
    risk = FEATURES.index("terminal_risk_30d")
    before = online_features([later], *store.histories([later]))[0, risk]
    assert store.add_labels([("fb-0", True), ("fb-1", True), ("unknown-id", True)]) == 2
    after = online_features([later], *store.histories([later]))[0, risk]
    assert before == 0 and after == pytest.approx(2 / 4)
    store.add_labels([("fb-1", False)])  # a correction
    assert online_features([later], *store.histories([later]))[0, risk] == pytest.approx(1 / 4)
    recent = Transaction("fb-recent", t0 + 3 * 86400, "fb-c9", "fb-terminal", 10.0)
    assert online_features([recent], *store.histories([recent]))[0, risk] == 0  # labels < 7 days


def test_clear_deletes_only_its_own_keys(store):
    other = f"not-finbento-{uuid.uuid4().hex}"
    store.r.set(other, "1")
    try:
        assert store.clear() > 0
        assert not list(store.r.scan_iter(match=f"{store.base}:*"))
        assert store.r.get(other) == "1"
    finally:
        store.r.delete(other)


def test_unreachable_redis_fails_fast():
    dead = TransactionStore.from_url("redis://127.0.0.1:1/0", timeout_s=0.2)
    txs = to_transactions(load_transactions(Settings().transactions_data_path).head(3))
    start = time.monotonic()
    with pytest.raises(redis.exceptions.ConnectionError):
        dead.histories(txs)
    assert time.monotonic() - start < 2


def test_labels_from_ingest_and_feedback(store):
    from finbento.features.transactions import Transaction

    t0 = pd.Timestamp("2018-10-01").timestamp()
    txs = [Transaction(f"lb-{i}", t0 + i * 60, f"lb-c{i}", f"lb-t{i % 2}", 10.0) for i in range(6)]
    store.ingest(txs[:3], [True, False, False])  # lb-0 labelled fraudulent at ingest
    store.ingest(txs[3:])
    store.add_labels([("lb-3", True), ("lb-4", True)])  # feedback, on the other terminal too
    store.add_labels([("lb-4", False)])  # a correction
    ids = ["lb-0", "lb-1", "lb-2", "lb-3", "lb-4", "lb-5", "lb-unknown", "lb-0"]
    assert store.labels(ids) == {
        "lb-0": True, "lb-1": False, "lb-2": False, "lb-3": True, "lb-4": False, "lb-5": False,
        "lb-unknown": None,
    }  # fmt: skip
    assert store.labels([]) == {}
    assert store.labels(["lb-nothing"]) == {"lb-nothing": None}
    dead = TransactionStore.from_url("redis://127.0.0.1:1/0", timeout_s=0.2)
    with pytest.raises(redis.exceptions.ConnectionError):
        dead.labels(["lb-0"])
