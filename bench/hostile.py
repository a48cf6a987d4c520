"""Hostile input vs everyone else: latency of normal requests while hostile ones keep arriving.

Serves the latest all-in-one Bento (prediction cache off, so every request is scored) and drives
``POST /predict/credit-risk`` with wrk (or an asyncio client when wrk is not installed) at
concurrency 8 in three phases: alone; while a second client (asyncio/httpx, ``--hostile-tasks``
concurrent tasks) sends hostile requests in a loop: bodies over the 1 MiB limit (413, with and
without ``Content-Length``), deeply nested JSON, bytes that are not UTF-8, NaN and Infinity,
5,000-digit numbers, 100,000-character strings, control characters, 100,000 repeated keys,
bodies that make thousands of validation errors (60,000 unknown fields, 1,000 bad batch rows) and
oversized batches (422); and, as the control, while the same client sends as many valid requests
to the same routes. On a 2-core machine any second client takes CPU from the first (the server,
wrk and the client share the cores), so "other requests unaffected" means: hostile traffic slows
the normal stream no more than the same amount of valid traffic does, and costs the server no
more per request. It prints requests/s, p50/p95/p99 and errors of each phase with ratios, the
CPU the server and the second client used (cores busy) and the server's CPU per second-client
request, the hostile answers by status and the ERROR lines the server logged, and writes
bench/results/hostile.json. Every hostile request must get a 4xx and every control one a 200: a
5xx or a dropped connection fails the run (exit 1), as do errors of the normal stream.

    python bench/hostile.py                  # 15 s per phase
    python bench/hostile.py --short          # CI: 3 s per phase
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.serving import run_asyncio, run_wrk  # noqa: E402

ROUTE = "/predict/credit-risk"
CONCURRENCY = 8


def hostile_requests(max_bytes: int = 1 << 20) -> list[tuple[str, str, bytes | None]]:
    """(name, path, body) of each hostile request; a None body is sent chunked, over the limit.

    Args:
        max_bytes: the served request-size limit (``FINBENTO_MAX_REQUEST_BYTES``), bytes.

    Returns:
        one entry per kind; bodies range from a few bytes to ``max_bytes + 1 KiB``.
    """
    from finbento.features.credit_risk import EXAMPLE_APPLICANT

    return [
        ("over limit", f"{ROUTE}/batch", b'{"applicants": []' + b" " * (max_bytes + 1024) + b"}"),
        ("over limit, chunked", f"{ROUTE}/batch", None),
        ("nested 50k", ROUTE, b"[" * 50_000 + b"]" * 50_000),
        ("not utf-8", ROUTE, b'{"applicant": {"limit_bal": "\xff\xfe\xfa"}}'),
        ("NaN", ROUTE, json.dumps({"applicant": {**EXAMPLE_APPLICANT, "age": math.nan}}).encode()),
        ("Infinity", ROUTE, b'{"applicant": {"limit_bal": Infinity}}'),
        ("5000 digits", ROUTE, b'{"applicant": {"limit_bal": ' + b"9" * 5000 + b"}}"),
        ("100k chars", "/predict/intent", json.dumps({"query": "x" * 100_000}).encode()),
        ("control chars", "/predict/intent",
         json.dumps({"query": "pay\u0000\u0007\u001b\u009f rent"}).encode()),
        ("100k repeated keys", "/predict/category", b"{" + b'"a":1,' * 100_000 + b'"b":1}'),
        ("60k unknown keys", "/predict/category",  # 650 KB in, one error per key out
         b"{" + b",".join(b'"k%d":1' % i for i in range(60_000)) + b"}"),
        ("1000 bad rows", f"{ROUTE}/batch",  # 20 KB in, 3 errors per row out
         b'{"applicants": [' + b",".join([b'{"x":1,"y":2,"z":3}'] * 1000) + b"]}"),
        ("batch 1001", f"{ROUTE}/batch", json.dumps({"applicants": [{}] * 1001}).encode()),
        ("batch 257", "/predict/intent/batch", json.dumps({"queries": ["hi"] * 257}).encode()),
    ]  # fmt: skip


async def _chunks(total: int, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """``total`` bytes of JSON-ish filler in ``size`` chunks (no Content-Length: chunked)."""
    yield b'{"applicants": ['
    for _ in range(total // size + 1):
        yield b" " * size


def valid_requests() -> list[tuple[str, str, bytes | None]]:
    """(name, path, body) of valid requests to the routes :func:`hostile_requests` targets."""
    from finbento.features.credit_risk import EXAMPLE_APPLICANT

    return [
        ("credit-risk", ROUTE, json.dumps({"applicant": EXAMPLE_APPLICANT}).encode()),
        ("credit-risk batch 3", f"{ROUTE}/batch",
         json.dumps({"applicants": [EXAMPLE_APPLICANT] * 3}).encode()),
        ("intent", "/predict/intent", json.dumps({"query": "where is my new card"}).encode()),
        ("category", "/predict/category",
         json.dumps({"description": "Uber ride", "amount": -450}).encode()),
    ]  # fmt: skip


async def second_client(
    url: str, seconds: float, tasks: int, requests: list[tuple[str, str, bytes | None]],
    max_bytes: int,
) -> dict:  # fmt: skip
    """Send ``requests`` round-robin from ``tasks`` tasks for ``seconds``.

    Args:
        url: the server's base URL.
        seconds: how long to keep sending.
        tasks: concurrent tasks (one connection each).
        requests: (name, path, body); a None body is sent chunked, ``max_bytes`` + 1 KiB long.
        max_bytes: the served request-size limit, bytes.

    Returns:
        ``{"requests", "by_kind": {name: {status: n}}, "status": {status: n}, "5xx",
        "transport_errors", "rps"}``; a transport error (reset, timeout) counts as a failure.
    """
    by_kind: dict[str, Counter] = {name: Counter() for name, _, _ in requests}
    deadline = time.perf_counter() + seconds
    headers = {"Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=tasks)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def worker(offset: int) -> None:
            i = offset
            while time.perf_counter() < deadline:
                name, path, body = requests[i % len(requests)]
                i += 1
                content = body if body is not None else _chunks(max_bytes + 1024)
                try:
                    r = await client.post(path, content=content, headers=headers)
                    by_kind[name][str(r.status_code)] += 1
                except httpx.HTTPError as exc:
                    by_kind[name][f"transport:{type(exc).__name__}"] += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(tasks)))
        elapsed = time.perf_counter() - started
    status = sum(by_kind.values(), Counter())
    total = sum(status.values())
    return {
        "requests": total,
        "rps": total / elapsed,
        "status": dict(status),
        "by_kind": {k: dict(v) for k, v in by_kind.items()},
        "5xx": sum(n for s, n in status.items() if s.startswith("5")),
        "transport_errors": sum(n for s, n in status.items() if s.startswith("transport")),
    }


def normal_stream(url: str, body_file: str, body: bytes, seconds: int) -> dict:
    """wrk (or the asyncio client) on the normal route at :data:`CONCURRENCY` for ``seconds``."""
    if shutil.which("wrk"):
        return run_wrk(url + ROUTE, body_file, CONCURRENCY, seconds)
    return asyncio.run(run_asyncio(url + ROUTE, body, CONCURRENCY, seconds))


def server_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by the server process and all its workers."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for proc in (root, *root.children(recursive=True)):
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def measured(run: Callable[[], dict], pid: int) -> dict:
    """``run()``'s result with ``server_cores`` and ``bench_cores``: CPU used per wall second.

    ``bench_cores`` is this process (the hostile client's thread); wrk is not counted.
    """
    cpu0, own0, t0 = server_cpu_s(pid), time.process_time(), time.perf_counter()
    result = run()
    wall = time.perf_counter() - t0
    result["server_cores"] = (server_cpu_s(pid) - cpu0) / wall
    result["bench_cores"] = (time.process_time() - own0) / wall
    result["wall_s"] = wall
    return result


def _row(name: str, r: dict) -> str:
    ms = " ".join(f"{r[k]:>8.1f}" for k in ("p50_ms", "p95_ms", "p99_ms"))
    return (f"{name:<24} {r['rps']:>8.0f} {ms} {r['errors']:>7} {r['server_cores']:>7.2f} "
            f"{r['bench_cores']:>7.2f} {r['server_ms_per_request']:>7.2f}")  # fmt: skip


def main() -> int:
    """Serve the latest all-in-one Bento, measure the three phases; print and save the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=15, help="length of each phase (s)")
    ap.add_argument("--hostile-tasks", type=int, default=4,
                    help="concurrent tasks of the second (hostile, then valid) client")  # fmt: skip
    ap.add_argument("--tag", help="Bento tag (default: the latest all-in-one build)")
    ap.add_argument("--short", action="store_true", help="CI: 3 s per phase")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "hostile.json")
    args = ap.parse_args()
    if args.short:
        args.seconds = 3

    from finbento.settings import get_settings

    settings = get_settings()
    settings.apply_environment()
    from finbento.bentos import latest_bento
    from finbento.features.credit_risk import EXAMPLE_APPLICANT
    from finbento.serving import free_port, start_bento_server, stop_bento_server

    tag = args.tag or latest_bento("all")
    if tag is None:
        print("no all-in-one Bento built: run `finbento build` (or `finbento up`)", file=sys.stderr)
        return 2
    body = json.dumps({"applicant": EXAMPLE_APPLICANT}).encode()
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as f:
        f.write(body)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"FINBENTO_PREDICTION_CACHE_TTL_S": "0", "FINBENTO_API_KEYS": "[]"}
    log_file = Path(tempfile.mkdtemp()) / "serve.log"
    proc = start_bento_server(tag, port, env, log_file=log_file)
    tool = "wrk" if shutil.which("wrk") else "asyncio/httpx"
    print(f"Bento {tag}; normal stream: {tool}, c={CONCURRENCY} on {ROUTE}; second client: "
          f"{args.hostile_tasks} asyncio tasks; {args.seconds} s per phase; "
          f"{os.cpu_count()} cores shared with the server")  # fmt: skip
    limit = settings.max_request_bytes
    phases: dict[str, dict] = {}
    others: dict[str, dict] = {}
    try:
        for _ in range(100):  # warm-up
            httpx.post(url + ROUTE, content=body, headers={"Content-Type": "application/json"})
        phases["alone"] = measured(lambda: normal_stream(url, f.name, body, args.seconds), proc.pid)
        for phase, requests in (("hostile", hostile_requests(limit)), ("valid", valid_requests())):
            other: dict = {}

            def run_second(requests: list = requests, other: dict = other) -> None:
                try:
                    run = second_client(url, args.seconds, args.hostile_tasks, requests, limit)
                    other.update(asyncio.run(run))
                except BaseException as exc:  # re-raised below, in the main thread
                    other["failed"] = exc

            def both(run_second: Callable[[], None] = run_second) -> dict:
                thread = threading.Thread(target=run_second)
                thread.start()
                stream = normal_stream(url, f.name, body, args.seconds)
                thread.join()
                return stream

            phases[phase] = measured(both, proc.pid)
            if "failed" in other:
                raise other["failed"]
            others[phase] = other
        alive = proc.poll() is None and httpx.get(url + "/readyz", timeout=5).status_code == 200
    finally:
        stop_bento_server(proc)
        os.unlink(f.name)
    server_log = log_file.read_text(errors="replace")
    lines = server_log.splitlines()
    logged_errors = sum("[ERROR]" in line or "Traceback" in line for line in lines)
    shutil.rmtree(log_file.parent)
    alone, hostile, valid = phases["alone"], others["hostile"], others["valid"]
    for phase, r in phases.items():  # server CPU per request of both clients, ms
        n = r["rps"] * r["wall_s"] + others.get(phase, {}).get("requests", 0)
        r["server_ms_per_request"] = 1000 * r["server_cores"] * r["wall_s"] / n
    ratio = {
        "hostile": _ratio(phases["hostile"], alone),
        "valid": _ratio(phases["valid"], alone),
        "hostile_vs_valid": _ratio(phases["hostile"], phases["valid"]),
    }
    print(
        f"{'phase':<24} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>7} "
        f"{'server':>7} {'client':>7} {'ms/req':>7}  (CPU: cores busy; server ms per request)"
    )
    print(_row("alone", alone))
    print(_row("beside hostile traffic", phases["hostile"]))
    print(_row("beside valid traffic", phases["valid"]))
    for name, r in ratio.items():
        label = {"hostile": "hostile / alone", "valid": "valid / alone",
                 "hostile_vs_valid": "hostile / valid"}[name]  # fmt: skip
        print(f"{'ratio ' + label:<24} {r['rps']:>8.2f} {r['p50']:>8.2f} {'':>8} {r['p99']:>8.2f}")
    for phase, other in others.items():
        print(f"{phase} client: {other['requests']} requests ({other['rps']:.0f}/s), "
              f"statuses {dict(sorted(other['status'].items()))}, 5xx {other['5xx']}, "
              f"transport errors {other['transport_errors']}")  # fmt: skip
    print(f"server alive: {alive}; ERROR/traceback lines in the server log: {logged_errors}")
    for kind, statuses in hostile["by_kind"].items():
        print(f"  {kind:<20} {dict(sorted(statuses.items()))}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "bento": tag, "route": ROUTE, "concurrency": CONCURRENCY, "seconds": args.seconds,
        "load_generator": tool, "alone": alone, "beside_hostile": phases["hostile"],
        "beside_valid": phases["valid"], "ratio": ratio, "hostile": hostile, "valid": valid,
        "server_alive": alive, "server_log_error_lines": logged_errors}, indent=2))  # fmt: skip
    print(f"wrote {args.out}")
    not_4xx = sum(n for st, n in hostile["status"].items() if not st.startswith("4"))
    not_200 = sum(n for st, n in valid["status"].items() if st != "200")
    failed = (not_4xx or not_200 or not alive
              or any(r["errors"] for r in phases.values()))  # fmt: skip
    return 1 if failed else 0


def _ratio(a: dict, b: dict) -> dict:
    return {"rps": a["rps"] / b["rps"], "p50": a["p50_ms"] / b["p50_ms"],
            "p99": a["p99_ms"] / b["p99_ms"]}  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
