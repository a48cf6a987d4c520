"""The prediction log against the real Redis on 127.0.0.1:6379 (own key prefix, cleaned up)."""

import time
import uuid

import pytest
import redis

from finbento.feature_store import connect
from monitoring.prediction_log import PredictionLog

pytestmark = pytest.mark.integration
REDIS_URL = "redis://127.0.0.1:6379/0"
DOWN = "redis://127.0.0.1:1/0"


@pytest.fixture
def plog(tmp_path):
    log = PredictionLog(REDIS_URL, f"finbento-test-{uuid.uuid4().hex[:8]}", tmp_path / "predlog",
                        maxlen=1_000, linger_s=0.0, retry_s=(0.05, 0.1))  # fmt: skip
    try:
        log._r.ping()
    except redis.exceptions.RedisError as exc:
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")
    yield log
    log.close(timeout=2)
    log.clear()
    assert not list(log._r.scan_iter(match=f"{log.prefix}:*"))


def write(log: PredictionLog, model: str, start: int, n: int) -> None:
    for i in range(start, start + n):
        log.record(model, 4, {"i": i, "amount": i * 1.5}, {"probability": 0.5}, 3.0)
    assert log.flush(10)


def test_stream_is_capped_and_read_is_newest_window_oldest_first(plog):
    write(plog, "fraud", 0, 3_000)
    assert plog.written == 3_000 and plog.fallback == 0
    length = plog._r.xlen(plog.key("fraud"))
    assert 1_000 <= length < 1_300  # MAXLEN ~ trims whole nodes (100 entries each)
    df = plog.read("fraud", 50)
    assert df["i"].tolist() == list(range(2_950, 3_000))
    assert df["model_version"].eq("4").all() and df["ts"].is_monotonic_increasing
    assert len(plog.read("fraud", 5_000)) == length  # capped by what the stream holds


def test_read_pages_through_long_windows(plog):
    plog.maxlen = 10_000
    write(plog, "anomaly", 0, 4_500)
    df = plog.read("anomaly", 4_100)  # three XREVRANGE pages of at most 2,000
    assert df["i"].tolist() == list(range(400, 4_500))


def test_outage_goes_to_the_file_and_is_replayed(plog):
    model = "credit-risk"
    write(plog, model, 0, 100)
    real = plog._r
    plog._r = connect(DOWN)  # Redis "goes down" for the drain thread
    write(plog, model, 100, 50)
    assert plog.fallback == 50
    assert (plog.fallback_dir / f"{model}.jsonl").exists()
    # a read during the outage merges the stream and the file
    assert plog.read(model, 1_000)["i"].tolist() == list(range(150))

    plog._r = real  # Redis is back: the next write succeeds and triggers the replay
    time.sleep(0.15)  # past the retry wait
    write(plog, model, 150, 10)
    assert plog.replayed == 50
    assert not (plog.fallback_dir / f"{model}.jsonl").exists()
    assert plog._r.xlen(plog.key(model)) == 160
    df = plog.read(model, 1_000)
    assert df["i"].tolist() == list(range(160))  # time order, whatever the arrival order


def test_a_new_process_replays_files_left_behind(plog, tmp_path):
    orphan = PredictionLog(DOWN, plog.prefix, plog.fallback_dir, linger_s=0.0)
    write(orphan, "intent", 0, 20)
    orphan.close(2)
    assert plog.read("intent", 100)["i"].tolist() == list(range(20))  # read from the file
    write(plog, "intent", 20, 1)  # the first drain loop replays what it finds
    assert plog.replayed == 20 and plog._r.xlen(plog.key("intent")) == 21
    assert not list(plog.fallback_dir.glob("*.jsonl*"))


def test_duplicates_from_a_half_failed_write_are_read_once(plog):
    write(plog, "ner", 0, 5)
    _, fields = plog._r.xrange(plog.key("ner"), count=1)[0]
    plog._append("ner", [fields["r"]])  # the same record also in the file
    assert plog.read("ner", 100)["i"].tolist() == list(range(5))
