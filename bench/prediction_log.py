"""Prediction-log overhead: what ``record()`` costs a request, and how fast the log drains.

Against the Redis at ``FINBENTO_REDIS_URL`` (a throw-away key prefix, deleted afterwards) with a
credit-risk applicant (23 features) and its prediction as the record:

- ``record()``: time of each call (µs, p50/p99/max) while the drain thread runs beside it, in a
  flood (as fast as one thread can call it) and paced (1 ms pause every 5 records, about 4,000
  records/s: a busy service process; the queue stays near empty). The max is a garbage-collection
  pause of the process (the flood's deep queue makes them long), not the log's own work;
- drain: records per second of the flood, from the first ``record()`` to ``flush()`` returning,
  into Redis and, with Redis unreachable, into the fallback file;
- ``read()``: time to read the newest 10,000 records back as a DataFrame.

    python bench/prediction_log.py            # 100,000 records
    python bench/prediction_log.py --short    # CI: 20,000 records, well under 20 s
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DOWN = "redis://127.0.0.1:1/0"


def run(log, n: int, inputs: dict, prediction: dict, pace: int = 0) -> dict[str, float]:
    """Record ``n`` predictions, timing each call, then wait for the drain.

    ``pace``: sleep 1 ms after every ``pace`` records (0: as fast as possible, a flood).
    """
    per_call = np.empty(n, dtype=np.int64)
    clock = time.perf_counter_ns
    start = time.perf_counter()
    for i in range(n):
        t0 = clock()
        log.record("credit-risk", "1", inputs, prediction, 3.2)
        per_call[i] = clock() - t0
        if pace and i % pace == 0:
            time.sleep(0.001)
    enqueued = time.perf_counter() - start
    if not log.flush(120):
        raise RuntimeError("drain did not finish in 120 s")
    drained = time.perf_counter() - start
    us = per_call / 1000
    return {
        "records": n,
        "record_p50_us": float(np.percentile(us, 50)),
        "record_p99_us": float(np.percentile(us, 99)),
        "record_max_us": float(us.max()),
        "enqueue_s": enqueued,
        "drain_records_per_s": n / drained,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100_000, help="records per run")
    parser.add_argument("--short", action="store_true", help="CI: 20,000 records")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    n = 20_000 if args.short else args.n

    from finbento.features.credit_risk import EXAMPLE_APPLICANT
    from finbento.settings import get_settings
    from monitoring.prediction_log import PredictionLog

    settings = get_settings()
    inputs = dict(EXAMPLE_APPLICANT)
    prediction = {"probability": 0.231, "risk_band": "medium", "decision": "review"}
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        prefix = f"finbento-bench-{uuid.uuid4().hex[:8]}"
        log = PredictionLog(settings.redis_url, prefix, Path(tmp) / "redis", maxlen=n,
                            queue_size=n + 1)  # fmt: skip
        try:
            log._r.ping()
        except Exception as exc:
            print(f"Redis not reachable at {settings.redis_url}: {exc}", file=sys.stderr)
            return 2
        try:
            log.record("credit-risk", "1", inputs, prediction, 3.2)  # start the thread
            log.flush(5)
            results["redis"] = run(log, n, inputs, prediction)
            results["redis"]["fallback_records"] = log.fallback
            results["paced"] = run(log, n // 10, inputs, prediction, pace=5)
            t0 = time.perf_counter()
            frame = log.read("credit-risk", 10_000)
            results["read"] = {"rows": len(frame), "seconds": time.perf_counter() - t0}
        finally:
            log.close(5)
            log.clear()

        down = PredictionLog(DOWN, prefix, Path(tmp) / "file", queue_size=n + 1,
                             fallback_max_bytes=1 << 30)  # fmt: skip
        down.record("credit-risk", "1", inputs, prediction, 3.2)
        down.flush(5)
        results["file"] = run(down, n, inputs, prediction)
        down.close(5)

    for name in ("redis", "file", "paced"):
        r = results[name]
        what = "offered" if name == "paced" else "drain"
        print(f"{name:>6}: record() p50 {r['record_p50_us']:.1f} µs, p99 {r['record_p99_us']:.1f}"
              f" µs, max {r['record_max_us']:.0f} µs; {what} {r['drain_records_per_s']:,.0f}"
              f" records/s ({r['records']:,} records)")  # fmt: skip
    print(f"  read: {results['read']['rows']:,} rows in {results['read']['seconds'] * 1000:.0f} ms")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
