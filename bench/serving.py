"""Serving benchmark: requests/s and latency of a model route, batching on and off, cache on.

``--model credit-risk`` (default) drives /predict/credit-risk of the all-in-one Bento (scored in
the API worker: no model service, so no batching modes); ``--model intent`` drives
/predict/intent of the language Bento. The Bento is started with real ``bentoml serve`` on a free
port (once per mode) and driven with ``wrk`` (or an asyncio client when wrk is not installed) at
each concurrency: ``on`` / ``off`` batching, or ``scored`` where the model has no batching switch
(the Redis prediction cache off, so every request is scored), and ``cached`` with the cache on
(every request after the first a hit: its best case); the script prints requests/s,
p50/p95/p99 and errors, plus the mean adaptive batch size BentoML reports on /metrics. Results go
to bench/results/serving-MODEL.json.

    python bench/serving.py                       # 20 s per point, concurrency 1 8 32 64
    python bench/serving.py --short               # CI: 3 s per point, concurrency 1 and 32
    python bench/serving.py --model intent --concurrency 1 8 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: model -> (route, bundle, batching switch or None, request body).
PROFILES: dict[str, tuple[str, str, str | None, dict]] = {
    "credit-risk": ("/predict/credit-risk", "all", None, {}),
    "intent": ("/predict/intent", "language", "FINBENTO_INTENT_BATCHING",
               {"query": "I still have not received my new card, when will it arrive?"}),
}  # fmt: skip


def run_wrk(url: str, body_file: str, concurrency: int, seconds: int) -> dict:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(ROOT / "bench" / "wrk_report.lua"),
            url,
        ],
        env={**os.environ, "BENCH_BODY_FILE": body_file},
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["rps"] = result["requests"] / result["duration_s"]
    result["errors"] = result.pop("socket_errors") + result.pop("status_errors")
    return result


async def run_asyncio(url: str, body: bytes, concurrency: int, seconds: int) -> dict:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    r = await client.post(
                        url, content=body, headers={"Content-Type": "application/json"}
                    )
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - t0)
                errors += not ok

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(q: float) -> float:
        return 1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))]

    return {
        "requests": len(latencies),
        "duration_s": elapsed,
        "rps": len(latencies) / elapsed,
        "errors": errors,
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
    }


def histogram_stats(port: int, name: str) -> tuple[float, float]:
    """(sum, count) of histogram ``name`` on the server's /metrics, over all its label sets."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    total = count = 0.0
    for line in text.splitlines():
        m = re.match(rf"{name}_(sum|count)(?:{{.*}})? ([0-9.e+]+)", line)
        if m:
            total += float(m.group(2)) if m.group(1) == "sum" else 0
            count += float(m.group(2)) if m.group(1) == "count" else 0
    return total, count


#: Histograms read per point: model calls per batch (BentoML's adaptive batching, inside the
#: model service) and items per call (requests merged by the public worker, services/coalesce).
BATCH_METRICS = {"calls_per_batch": "bentoml_service_adaptive_batch_size",
                 "items_per_call": "ml_model_call_items"}  # fmt: skip


def batch_stats(port: int) -> dict[str, tuple[float, float]]:
    """(sum, count) of each of :data:`BATCH_METRICS`."""
    return {key: histogram_stats(port, name) for key, name in BATCH_METRICS.items()}


def _mean(before: tuple[float, float], after: tuple[float, float]) -> float | None:
    calls = after[1] - before[1]
    return (after[0] - before[0]) / calls if calls > 0 else None


def batch_sizes(before: dict, after: dict) -> dict[str, float | None]:
    """Between two :func:`batch_stats` readings: mean calls per batch, items per call, and
    ``mean_batch_size``, the items the model saw per batch (their product; None: no batch)."""
    means = {k: _mean(before[k], after[k]) for k in BATCH_METRICS}
    calls, items = means["calls_per_batch"], means["items_per_call"]
    return {**means, "mean_batch_size": calls * (items or 1) if calls else None}


def on_off_ratios(results: list[dict]) -> dict[int, float]:
    """Concurrency -> requests/s with batching on / off, where both modes ran (same run)."""
    rps = {(r["mode"], r["concurrency"]): r["rps"] for r in results}
    return {
        c: rps["on", c] / rps["off", c] for mode, c in rps if mode == "on" and rps.get(("off", c))
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(PROFILES), default="credit-risk")
    parser.add_argument("--tag", help="Bento tag (default: latest build of the model's bundle)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--short", action="store_true", help="CI: 3 s at concurrency 1 and 32")
    parser.add_argument("--modes", nargs="+", choices=["on", "off", "scored", "cached"],
                        help="batching on / off, or scored for a model without batching (the "
                        "prediction cache off: every request scored), cached: the Redis "
                        "prediction cache on; default: every mode the model has")  # fmt: skip
    parser.add_argument("--out", help="JSON results (default bench/results/serving-MODEL.json)")
    args = parser.parse_args()
    if args.short:
        args.concurrency, args.seconds = [1, 32], 3

    from finbento.settings import get_settings

    get_settings().apply_environment()
    from finbento.bentos import latest_bento
    from finbento.features.credit_risk import EXAMPLE_APPLICANT
    from finbento.serving import free_port, start_bento_server, stop_bento_server

    route, bundle, switch, payload = PROFILES[args.model]
    args.modes = args.modes or (["on", "off", "cached"] if switch else ["scored", "cached"])
    payload = payload or {"applicant": EXAMPLE_APPLICANT}
    out = Path(args.out or ROOT / "bench" / "results" / f"serving-{args.model}.json")
    tag = args.tag or latest_bento(bundle)
    if tag is None:
        print(f"no Bento built: run `finbento build --bundle {bundle}` first", file=sys.stderr)
        return 2
    use_wrk = shutil.which("wrk") is not None
    body = json.dumps(payload).encode()
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as body_file:
        body_file.write(body)

    print(
        f"Bento {tag}; load generator: {'wrk' if use_wrk else 'asyncio/httpx'}; "
        f"{args.seconds} s per point; {os.cpu_count()} cores shared with the server"
    )
    print(
        f"{'mode':>8} {'conc':>5} {'req/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'errors':>7} {'items/call':>10} {'mean batch':>10}"
    )
    results = []
    for mode in args.modes:
        port = free_port()
        env = {"FINBENTO_PREDICTION_CACHE_TTL_S": "3600" if mode == "cached" else "0"}
        if switch:
            env[switch] = str(mode != "off")
        proc = start_bento_server(tag, port, env)
        url = f"http://127.0.0.1:{port}{route}"
        try:
            for _ in range(200):  # warm-up
                httpx.post(url, content=body, headers={"Content-Type": "application/json"})
            for conc in args.concurrency:
                before = batch_stats(port)
                if use_wrk:
                    r = run_wrk(url, body_file.name, conc, args.seconds)
                else:
                    r = asyncio.run(run_asyncio(url, body, conc, args.seconds))
                after = batch_stats(port)
                r.update(mode=mode, concurrency=conc, **batch_sizes(before, after))
                results.append(r)
                cols = [
                    f"{r[k]:.2f}" if r[k] else "-" for k in ("items_per_call", "mean_batch_size")
                ]
                print(
                    f"{mode:>8} {conc:>5} {r['rps']:>9.0f} {r['p50_ms']:>8.1f} "
                    f"{r['p95_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['errors']:>7} {cols[0]:>10} "
                    f"{cols[1]:>10}"
                )
        finally:
            stop_bento_server(proc)
    os.unlink(body_file.name)
    ratios = on_off_ratios(results)
    for conc, ratio in ratios.items():
        print(f"batching on / off at concurrency {conc}: {ratio:.2f}x")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"bento": tag, "route": route, "results": results, "on_off": ratios}, indent=2)
    )
    print(f"wrote {out}")
    failed = [r for r in results if r["requests"] == 0 or r["errors"] > 0.01 * r["requests"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
