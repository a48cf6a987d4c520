"""Spending-forecast latency: p50/p95 of a 6-month forecast for one user, cold and warm cache.

Serves the latest forecast Bento with real ``bentoml serve`` (Redis at ``FINBENTO_REDIS_URL`` for
the cache, a throw-away key prefix) and sends the shipped household's expenses (about 3 years,
every category) as the request's history. *Cold*: each request's history differs by one rupee,
so nothing is cached and every category is fitted. *Warm*: the same request again, answered from
the Redis cache. Targets (issue 5): p95 < 3 s cold, < 500 ms warm. Results go to
bench/results/spending.json.

    python bench/spending.py            # 30 cold, 200 warm requests
    python bench/spending.py --short    # CI: 5 cold, 50 warm
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def percentiles(seconds: list[float]) -> dict[str, float]:
    """p50 and p95 in milliseconds."""
    ms = 1000 * np.asarray(seconds)
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "n": len(ms)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", help="Bento tag (default: latest forecast build)")
    parser.add_argument("--cold", type=int, default=30)
    parser.add_argument("--warm", type=int, default=200)
    parser.add_argument("--short", action="store_true")
    args = parser.parse_args()
    if args.short:
        args.cold, args.warm = 5, 50

    from finbento.settings import get_settings

    settings = get_settings()
    settings.apply_environment()
    from finbento.bentos import latest_bento
    from finbento.serving import free_port, start_bento_server, stop_bento_server
    from finbento.spending import expenses
    from finbento.spending_store import SpendingStore
    from trainers.spending import load_transactions

    tag = args.tag or latest_bento("forecast")
    if tag is None:
        print("no forecast Bento: run `finbento build --bundle forecast` first", file=sys.stderr)
        return 2
    history = expenses(load_transactions(settings))
    rows = [{"date": d.strftime("%Y-%m-%d"), "amount": float(a), "category": c}
            for d, a, c in zip(history["date"], history["amount"], history["category"],
                               strict=True)]  # fmt: skip
    prefix = f"finbento-bench-{uuid.uuid4().hex[:8]}"
    port = free_port()
    proc = start_bento_server(tag, port, {"FINBENTO_REDIS_PREFIX": prefix})
    url = f"http://127.0.0.1:{port}/predict/spending"
    cold, warm = [], []
    try:
        with httpx.Client(timeout=60) as client:
            for i in range(args.cold):
                body = {"user_id": "household", "months": 6, "history": rows}
                body["history"][0] = {**rows[0], "amount": rows[0]["amount"] + i + 1}
                t0 = time.perf_counter()
                r = client.post(url, json=body)
                cold.append(time.perf_counter() - t0)
                assert r.status_code == 200 and not r.json()["cached"], r.text
            for _ in range(args.warm):
                t0 = time.perf_counter()
                r = client.post(url, json=body)
                warm.append(time.perf_counter() - t0)
                assert r.status_code == 200 and r.json()["cached"], r.text
            methods = r.json()["method"]
    finally:
        stop_bento_server(proc)
        SpendingStore.from_url(settings.redis_url, prefix).clear()
    result = {"bento": tag, "history_rows": len(rows), "cold": percentiles(cold),
              "warm": percentiles(warm), "methods": methods}  # fmt: skip
    print(f"Bento {tag}: 6-month forecast of {len(methods)} series from {len(rows)} expenses")
    for kind in ("cold", "warm"):
        p = result[kind]
        print(
            f"  {kind:>4}: p50 {p['p50_ms']:7.1f} ms   p95 {p['p95_ms']:7.1f} ms   "
            f"({p['n']} requests)"
        )
    print(f"  methods: {methods}")
    out = ROOT / "bench" / "results" / "spending.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    ok = result["cold"]["p95_ms"] < 3000 and result["warm"]["p95_ms"] < 500
    print("targets met" if ok else "TARGETS MISSED (p95 < 3 s cold, < 500 ms warm)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
