"""The prediction log without Redis: the file fallback, the bounded queue, the DataFrame shape."""

import json
import threading
import uuid

import numpy as np
import pandas as pd
import pytest
from prometheus_client import REGISTRY

from finbento.settings import Settings
from monitoring import prediction_log
from monitoring.prediction_log import PredictionLog, get_prediction_log

DOWN = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connection refused at once


def dropped(model: str) -> float:
    return REGISTRY.get_sample_value("ml_prediction_log_dropped_total", {"model_name": model}) or 0


def fallen_back(model: str) -> float:
    labels = {"model_name": model}
    return REGISTRY.get_sample_value("ml_prediction_log_fallback_total", labels) or 0


@pytest.fixture
def model() -> str:
    return f"test-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def plog(tmp_path):
    log = PredictionLog(DOWN, "t", tmp_path / "predlog", linger_s=0.0)
    yield log
    log.close(timeout=2)


def test_records_fall_back_to_a_file_and_read_returns_them(plog, model):
    for i in range(40):
        plog.record(model, 3, {"LIMIT_BAL": 1000.0 * i, "SEX": 1 + i % 2, "ts": i},
                    {"probability": i / 100, "band": "low"}, latency_ms=2.5)  # fmt: skip
    assert plog.flush(5)
    assert plog.written == 0 and plog.fallback == 40 and fallen_back(model) == 40
    path = plog.fallback_dir / f"{model}.jsonl"
    lines = path.read_text().splitlines()
    assert len(lines) == 40
    rec = json.loads(lines[0])
    assert rec["model"] == model and rec["version"] == "3" and rec["inputs"]["SEX"] == 1

    df = plog.read(model, window=10)
    assert list(df.columns) == ["LIMIT_BAL", "SEX", "input.ts", "prediction.probability",
                                "prediction.band", "model_version", "latency_ms", "ts"]  # fmt: skip
    assert len(df) == 10
    assert df["LIMIT_BAL"].tolist() == [1000.0 * i for i in range(30, 40)]  # newest, oldest first
    assert df["ts"].is_monotonic_increasing and str(df["ts"].dtype) == "datetime64[ns, UTC]"
    assert df["model_version"].eq("3").all() and df["latency_ms"].eq(2.5).all()
    assert df["SEX"].dtype.kind == "i"
    assert len(plog.read(model, window=1000)) == 40


def test_text_inputs_scalars_and_numpy(plog, model):
    plog.record(model, "1", "how do I close my card", "card_closure", 12.0)
    plog.record(model, np.int64(2), {"amount": np.float32(9.5), "n": np.int64(3)},
                {"p": np.array([0.1, 0.9])}, np.float64(1.0))  # fmt: skip
    assert plog.flush(5)
    df = plog.read(model, 5)
    assert df["text"].iloc[0] == "how do I close my card"
    assert df["prediction.value"].iloc[0] == "card_closure"
    assert df["amount"].iloc[1] == 9.5 and df["model_version"].tolist() == ["1", "2"]
    assert df["prediction.p"].iloc[1] == [0.1, 0.9]


def test_full_queue_drops_and_counts(tmp_path, model, monkeypatch):
    log = PredictionLog(DOWN, "t", tmp_path, queue_size=5, linger_s=0.0)
    inside, release = threading.Event(), threading.Event()
    real_write = log._write

    def blocked_write(batch):
        inside.set()
        release.wait(5)
        real_write(batch)

    monkeypatch.setattr(log, "_write", blocked_write)
    log.record(model, 1, {"x": 0}, {"p": 0}, 1.0)  # taken by the drain thread, which blocks
    assert inside.wait(5)
    for i in range(8):  # 5 fit, 3 do not
        log.record(model, 1, {"x": i}, {"p": 0}, 1.0)
    assert dropped(model) == 3
    release.set()
    assert log.flush(5)
    assert len(log.read(model, 100)) == 6
    log.close(2)
    log.record(model, 1, {"x": 0}, {"p": 0}, 1.0)  # closed: dropped, never raised
    assert dropped(model) == 4


def test_record_never_raises(plog, model):
    class Weird:
        def __iter__(self):
            raise RuntimeError("no")

    plog.record(model, 1, Weird(), {"p": 1}, 1.0)  # type: ignore[arg-type]
    plog.record(model, 1, {"ok": object()}, {"p": 1}, "not a number")  # type: ignore[arg-type]
    assert plog.flush(5)
    assert dropped(model) == 2
    assert plog.read(model, 10).empty


def test_a_burst_of_records_is_queued_and_all_flushed(plog, model):
    # Speed is measured by bench/prediction_log.py (timed asserts flake on busy CI machines).
    inputs, pred = {f"f{i}": float(i) for i in range(23)}, {"probability": 0.2}
    for _ in range(2000):
        plog.record(model, 1, inputs, pred, 1.0)
    assert plog.flush(10)
    assert plog.fallback == 2000  # every record reached the (Redis-down) fallback file


def test_fallback_file_is_rotated_and_capped(tmp_path, model):
    log = PredictionLog(DOWN, "t", tmp_path, fallback_max_bytes=4_000, linger_s=0.0)
    for i in range(200):
        log.record(model, 1, {"x": i}, {"p": 0.5}, 1.0)
        if i % 20 == 19:
            assert log.flush(5)
    assert log.flush(5)
    files = sorted(p.name for p in tmp_path.glob(f"{model}.jsonl*"))
    assert files == [f"{model}.jsonl", f"{model}.jsonl.1"]
    assert all(p.stat().st_size <= 4_000 for p in tmp_path.glob(f"{model}.jsonl*"))
    kept = len(log.read(model, 1000))
    assert kept + dropped(model) == 200 and dropped(model) > 0
    assert log.read(model, 1000)["x"].iloc[-1] == 199  # the newest survive
    log.close(2)


def test_read_of_nothing_and_bad_window(plog):
    df = plog.read("nobody", 10)
    assert df.empty and list(df.columns) == ["model_version", "latency_ms", "ts"]
    with pytest.raises(ValueError):
        plog.read("nobody", 0)


def test_get_prediction_log_is_one_per_process(tmp_path):
    prediction_log.reset_prediction_log()
    try:
        s = Settings(state_dir=tmp_path / "state", redis_url=DOWN, redis_prefix="t")
        first = get_prediction_log(s)
        assert get_prediction_log() is first and get_prediction_log(Settings()) is first
        assert first.fallback_dir == (tmp_path / "state" / "predlog").resolve()
        assert first.maxlen == 100_000 and first.prefix == "t"
        assert first.key("credit-risk") == "t:predlog:v1:credit-risk"
    finally:
        prediction_log.reset_prediction_log()


def test_frame_keeps_input_order_and_renames_clashes():
    recs = [
        {"id": "a", "version": "1", "inputs": {"b": 1, "prediction.x": 2, "nested": {"k": 3}},
         "prediction": {"p": 0.1}, "latency_ms": 1, "ts": 2.0},
        {"id": "b", "version": "1", "inputs": {"a": 1}, "prediction": {}, "latency_ms": 1,
         "ts": 1.0},
    ]  # fmt: skip
    df = prediction_log._frame(recs)
    assert list(df.columns) == ["b", "input.prediction.x", "nested.k", "a", "prediction.p",
                                "model_version", "latency_ms", "ts"]  # fmt: skip
    assert pd.isna(df["a"].iloc[0]) and df["nested.k"].iloc[0] == 3


def test_a_forked_child_starts_afresh(plog, model):
    import os

    plog.record(model, 1, {"x": 1}, {"p": 0}, 1.0)
    assert plog.flush(5)
    pid = os.fork()
    if pid == 0:  # child: empty queue, no thread until its first record, which it writes
        ok = plog._thread is None and plog._queue.qsize() == 0
        plog.record(model, 1, {"x": 2}, {"p": 0}, 1.0)
        ok = ok and plog.flush(5) and plog._thread is not None
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert plog.read(model, 10)["x"].tolist() == [1, 2]
