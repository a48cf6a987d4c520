"""The feature store's ingest spool: writes while Redis is down go to a local file and land in
Redis, once, in order, when a private ``redis-server`` starts on the port."""

import contextlib
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from prometheus_client import REGISTRY

from finbento.feature_store import IngestSpool, TransactionStore
from finbento.features.transactions import Transaction
from finbento.serving import free_port
from finbento.spool import JsonlSpool

DOWN = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connection refused at once


def spooled(result: str) -> float:
    return REGISTRY.get_sample_value("ml_feature_store_spooled_total", {"result": result}) or 0


def transactions(run: str, n: int, start: float = 1.53e9) -> list[Transaction]:
    return [Transaction(f"{run}-{i}", start + 60.0 * i, f"c{i % 3}", f"t{i % 2}", 10.0 + i)
            for i in range(n)]  # fmt: skip


@contextlib.contextmanager
def redis_server(port: int, folder) -> Iterator[redis.Redis]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not installed")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port, decode_responses=True, socket_timeout=2)
    try:
        end = time.monotonic() + 10
        while True:
            with contextlib.suppress(redis.exceptions.RedisError):
                if client.ping():
                    break
            assert time.monotonic() < end, "redis-server did not start"
            time.sleep(0.05)
        yield client
    finally:
        proc.kill()
        proc.wait(10)


def test_writes_while_down_are_spooled_then_replayed_once_in_order(tmp_path, monkeypatch):
    port = free_port()
    store = TransactionStore.from_url(f"redis://127.0.0.1:{port}/0", prefix="spool-test")
    spool = IngestSpool(store, tmp_path / "feature-spool", retry_s=(0.05, 0.2))
    run = uuid.uuid4().hex[:6]
    first, second = transactions(run, 30), transactions(run, 40)[30:]
    before = {r: spooled(r) for r in ("spooled", "replayed", "dropped")}
    calls: list[list[str]] = []
    real_ingest = store.ingest

    def recording_ingest(txs, labels=()):
        out = real_ingest(txs, labels)
        calls.append([tx.transaction_id for tx in txs])
        return out

    monkeypatch.setattr(store, "ingest", recording_ingest)

    for batch in (first, second, first[:5]):  # the last one twice: a retried request
        with pytest.raises(redis.exceptions.ConnectionError):
            store.ingest(batch)
        started = time.perf_counter()
        assert spool.add(batch) == len(batch)
        assert time.perf_counter() - started < 0.5  # a file append, no Redis round trip
    files = spool.spool.files(spool.name)  # the replay thread claims nothing while Redis is down
    lines = [json.loads(line) for path in files for line in path.read_text().splitlines()]
    assert [rec["id"] for rec in lines] == [tx.transaction_id for tx in first + second + first[:5]]
    assert spool.spooled == 45 and spooled("spooled") - before["spooled"] == 45
    time.sleep(0.3)  # the replay thread retries against a dead Redis: files stay
    assert spool.spool.pending() and spool.replayed == 0

    with redis_server(port, tmp_path) as client:
        assert spool.wait(15)
        assert not spool.spool.pending()
        ids = [tx.transaction_id for tx in first + second]
        assert store.known(ids) == set(ids)
        assert [txid for call in calls for txid in call] == ids + ids[:5]  # chronological
        assert spool.replayed == 45 and spool.replayed_new == 40  # duplicates stored once
        members = sum(client.zcard(f"spool-test:transactions:v1:c:c{i}") for i in range(3))
        assert members == 40
        assert spooled("replayed") - before["replayed"] == 45
        assert spooled("dropped") == before["dropped"]


def test_replay_soon_picks_up_files_left_by_another_process(tmp_path):
    port = free_port()
    store = TransactionStore.from_url(f"redis://127.0.0.1:{port}/0", prefix="spool-left")
    txs = transactions(uuid.uuid4().hex[:6], 12)
    JsonlSpool(tmp_path, 2**20).append(
        store.base, [json.dumps({"id": t.transaction_id, "ts": t.ts, "c": t.customer_id,
                                 "t": t.terminal_id, "a": t.amount}) for t in txs]
        + ['{"id": "torn'],
    )  # fmt: skip
    with redis_server(port, tmp_path):
        spool = IngestSpool(store, tmp_path)
        spool.replay_soon()
        assert spool.wait(10)
        assert store.known([t.transaction_id for t in txs]) == {t.transaction_id for t in txs}
        assert spool.replayed == 12 and spool.dropped == 1 and not spool.spool.pending()
        spool.replay_soon()  # nothing left: no thread, no work
        assert spool.wait(1) and spool.replayed == 12


def test_a_full_spool_rotates_and_counts_what_it_drops(tmp_path):
    spool = IngestSpool(TransactionStore.from_url(DOWN), tmp_path, max_bytes=2_000,
                        retry_s=(5.0, 5.0))  # fmt: skip
    dropped = spooled("dropped")
    txs = transactions(uuid.uuid4().hex[:6], 100)
    for i in range(0, 100, 10):
        spool.add(txs[i : i + 10])
    files = spool.spool.files(spool.name)  # nothing claimed while Redis is down
    kept = sum(len(p.read_text().splitlines()) for p in files)
    assert spool.spooled == 100 and spool.dropped == 100 - kept > 0
    assert spooled("dropped") - dropped == spool.dropped
    assert sum(p.stat().st_size for p in files) <= 2 * 2_000


def test_claim_keeps_the_order_of_appends(tmp_path):
    spool = JsonlSpool(tmp_path, 30)
    for i in range(4):
        spool.append("x", [f'{{"n":{i}}}'])
    first = spool.claim("x")
    spool.append("x", ['{"n":4}'])
    claimed = spool.claim("x")  # the earlier claim was not replayed: it comes first
    assert claimed[: len(first)] == first
    numbers = [json.loads(line)["n"] for p in claimed for line in p.read_text().splitlines()]
    assert numbers == sorted(numbers) and numbers[-1] == 4


def test_one_process_replays_at_a_time(tmp_path):
    port = free_port()
    store = TransactionStore.from_url(f"redis://127.0.0.1:{port}/0", prefix="spool-busy")
    spool = IngestSpool(store, tmp_path, retry_s=(0.05, 0.1))
    txs = transactions(uuid.uuid4().hex[:6], 5)
    with redis_server(port, tmp_path):
        other = JsonlSpool(tmp_path, 2**20)
        with other.replay_lock(store.base):  # another worker is replaying
            spool.add(txs)
            with pytest.raises(BlockingIOError):
                spool.replay()
            time.sleep(0.2)
            assert spool.replayed == 0 and spool.spool.pending()
        assert spool.wait(10) and spool.replayed == 5  # retried once the lock was free
        assert store.known([t.transaction_id for t in txs]) == {t.transaction_id for t in txs}
