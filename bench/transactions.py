"""Fraud scoring end to end with the Redis feature store: transactions/s and single-call latency.

Loads the shipped slice's history up to 2018-08-28 into Redis under a throw-away prefix, serves the
latest built Bento with real ``bentoml serve``, then:

- posts the next days' real transactions to ``/predict/fraud/batch`` in batches of 1,000
  (features read from Redis, scored, written back), one client and two concurrent clients;
- drives ``/predict/fraud`` with one transaction per request (wrk, ``ingest: false``) at
  concurrency 1 and 8 and reports p50/p95/p99.

    python bench/transactions.py            # 20 s per wrk point
    python bench/transactions.py --short    # CI: 3 s per point, fewer batches
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.serving import run_wrk  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", help="Bento tag (default: latest finbento build)")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--short", action="store_true")
    args = parser.parse_args()
    from finbento.settings import get_settings

    settings = get_settings()
    settings.apply_environment()
    from finbento.bentos import latest_bento
    from finbento.datasets import load_transactions, to_transactions
    from finbento.feature_store import TransactionStore
    from finbento.serving import free_port, start_bento_server, stop_bento_server

    tag = args.tag or latest_bento("all")
    if tag is None:
        print("no Bento built: run `finbento up --no-serve` first", file=sys.stderr)
        return 2
    seconds = 3 if args.short else args.seconds
    df = load_transactions(settings.transactions_data_path)
    start = "2018-08-10" if args.short else "2018-07-20"
    history = df[(df.tx_datetime >= start) & (df.tx_datetime < "2018-08-28")]
    new = df[df.tx_datetime >= "2018-08-28"].head(2000 if args.short else 6000)
    prefix = f"finbento-bench-{uuid.uuid4().hex[:8]}"
    store = TransactionStore.from_url(settings.redis_url, prefix, timeout_s=10)
    t0 = time.time()
    store.ingest(to_transactions(history), history.tx_fraud.astype(bool))
    print(
        f"Bento {tag}; {len(history):,} transactions of history loaded into Redis in "
        f"{time.time() - t0:.1f} s"
    )
    port = free_port()
    proc = start_bento_server(tag, port, env={"FINBENTO_REDIS_PREFIX": prefix})
    url = f"http://127.0.0.1:{port}"
    rows = [{"transaction_id": r.transaction_id, "tx_datetime": r.tx_datetime.isoformat(),
             "customer_id": r.customer_id, "terminal_id": r.terminal_id,
             "tx_amount": float(r.tx_amount)} for r in new.itertuples()]  # fmt: skip
    results: dict[str, object] = {"bento": tag}
    try:
        with httpx.Client(timeout=60) as client:
            client.post(
                url + "/predict/fraud/batch", json={"transactions": rows[:10], "ingest": False}
            )  # warm-up
            batches = [rows[i : i + 1000] for i in range(0, len(rows), 1000)]
            half = len(batches) // 2

            def post(batch: list[dict]) -> int:
                r = client.post(url + "/predict/fraud/batch", json={"transactions": batch})
                assert r.status_code == 200, r.text
                return len(r.json()["predictions"])

            t = time.perf_counter()
            n = sum(post(b) for b in batches[:half])
            one = n / (time.perf_counter() - t)
            t = time.perf_counter()
            with ThreadPoolExecutor(2) as pool:
                n = sum(pool.map(post, batches[half:]))
            two = n / (time.perf_counter() - t)
        print(
            f"/predict/fraud/batch, 1,000 per request, with Redis read + write: "
            f"{one:,.0f} transactions/s (1 client), {two:,.0f} transactions/s (2 clients)"
        )
        results["batch_tps"] = {"1_client": one, "2_clients": two}
        body = json.dumps({"transaction": rows[-1], "ingest": False}).encode()
        with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as f:
            f.write(body)
        print(f"{'conc':>5} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>7}")
        results["single"] = []
        for conc in (1, 8):
            r = run_wrk(url + "/predict/fraud", f.name, conc, seconds)
            results["single"].append({"concurrency": conc, **r})
            print(
                f"{conc:>5} {r['rps']:>8.0f} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} "
                f"{r['p99_ms']:>8.1f} {r['errors']:>7}"
            )
        os.unlink(f.name)
    finally:
        stop_bento_server(proc)
        store.clear()
    out = ROOT / "bench" / "results" / "transactions.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
