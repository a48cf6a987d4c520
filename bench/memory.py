"""Resident memory of every bundle's Bento after start and over minutes of steady load.

Serves the latest Bento of each bundle (risk, language, forecast, advisor, recommend; bundles not
built are skipped) with real ``bentoml serve``, all at once, records each one's resident memory
(RSS of the server and all its workers, MiB) once ready, then drives every route of every bundle
(``bench/bodies.py``; ``--concurrency`` clients per bundle, routes in turn, prediction cache off)
for ``--minutes`` while sampling RSS every ``--sample-s`` seconds. Growth is judged from the end of
the first minute of load (caches, allocator pools and lazy imports fill then) to the end, so
``growth_mib`` is what a leak would add. Prints one row per bundle; writes bench/results/memory.json
and memory.png (RSS over time).

    python bench/memory.py                 # 10 minutes of load
    python bench/memory.py --short         # CI: 30 s
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bodies import bundle_routes  # noqa: E402
from bench.compare import resident_mb  # noqa: E402

BUNDLES = ("risk", "language", "forecast", "advisor", "recommend")
#: Growth after warm-up that reads as a leak: this share of the warm RSS and at least this many MiB.
GROWTH_SHARE, GROWTH_MIN_MIB = 0.10, 50.0


async def load(ports: dict[str, int], pids: dict[str, int], args: argparse.Namespace) -> dict:
    """Drive every bundle for ``args.minutes``; return per-bundle counts and the RSS samples."""
    import httpx

    stats = {b: {"requests": 0, "errors": 0, "samples": []} for b in ports}
    deadline = time.monotonic() + 60 * args.minutes
    started = time.monotonic()

    async def client(bundle: str, offset: int, http: httpx.AsyncClient) -> None:
        routes = list(bundle_routes(bundle).items())
        i = offset
        while time.monotonic() < deadline:
            route, body = routes[i % len(routes)]
            i += 1
            try:
                r = await http.post(f"http://127.0.0.1:{ports[bundle]}{route}", json=body)
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            stats[bundle]["requests"] += 1
            stats[bundle]["errors"] += not ok

    async def sampler() -> None:
        while time.monotonic() < deadline:
            for b, pid in pids.items():
                stats[b]["samples"].append((time.monotonic() - started, resident_mb(pid)))
            await asyncio.sleep(args.sample_s)

    async with httpx.AsyncClient(timeout=30) as http:
        tasks = [client(b, k, http) for b in ports for k in range(args.concurrency)]
        await asyncio.gather(sampler(), *tasks)
    for b, pid in pids.items():
        stats[b]["samples"].append((time.monotonic() - started, resident_mb(pid)))
    return stats


def warm_rss(samples: list[tuple[float, float]], warm_s: float) -> float:
    """RSS of the first sample taken after ``warm_s`` seconds of load (the last one if none)."""
    return next((mb for t, mb in samples if t >= warm_s), samples[-1][1])


def plot(stats: dict, path: Path) -> None:
    """RSS over time, one line per bundle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for b, s in stats.items():
        ax.plot([t / 60 for t, _ in s["samples"]], [mb for _, mb in s["samples"]], label=b)
    ax.set_xlabel("minutes of load")
    ax.set_ylabel("resident memory, MiB")
    ax.legend(fontsize=8)
    ax.set_title("Bento resident memory under load (server + workers)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    """Serve every built bundle, load them, print and save the memory figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--concurrency", type=int, default=4, help="clients per bundle")
    ap.add_argument("--sample-s", type=float, default=15)
    ap.add_argument("--short", action="store_true", help="CI: 30 s of load")
    args = ap.parse_args()
    if args.short:
        args.minutes, args.sample_s = 0.5, 5

    from finbento.settings import get_settings

    get_settings().apply_environment()
    from finbento.bentos import latest_bento
    from finbento.serving import free_port, start_bento_server, stop_bento_server

    tags = {b: t for b in BUNDLES if (t := latest_bento(b))}
    skipped = sorted(set(BUNDLES) - set(tags))
    note = f" (not built, skipped: {', '.join(skipped)})" if skipped else ""
    print(f"bundles: {', '.join(tags)}{note}; {args.minutes:g} min of load")
    procs, ports = {}, {}
    try:
        for b, tag in tags.items():
            ports[b] = free_port()
            procs[b] = start_bento_server(tag, ports[b], {"FINBENTO_PREDICTION_CACHE_TTL_S": "0"})
        time.sleep(5)
        pids = {b: p.pid for b, p in procs.items()}
        at_start = {b: resident_mb(pid) for b, pid in pids.items()}
        stats = asyncio.run(load(ports, pids, args))
    finally:
        for p in procs.values():
            stop_bento_server(p)
    warm_s = min(60.0, 30 * args.minutes)
    print(f"{'bundle':<10} {'start':>8} {'warm':>8} {'end':>8} {'growth':>8} {'requests':>9} "
          f"{'errors':>6}   (MiB)")  # fmt: skip
    rows, leaks = {}, []
    for b, s in stats.items():
        warm, end = warm_rss(s["samples"], warm_s), s["samples"][-1][1]
        rows[b] = {"tag": tags[b], "start_mib": at_start[b], "warm_mib": warm, "end_mib": end,
                   "growth_mib": end - warm, "requests": s["requests"], "errors": s["errors"],
                   "samples": s["samples"]}  # fmt: skip
        if end - warm > max(GROWTH_MIN_MIB, GROWTH_SHARE * warm):
            leaks.append(b)
        print(f"{b:<10} {at_start[b]:>8.0f} {warm:>8.0f} {end:>8.0f} {end - warm:>+8.0f} "
              f"{s['requests']:>9} {s['errors']:>6}")  # fmt: skip
    out = ROOT / "bench" / "results" / "memory.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"minutes": args.minutes, "bundles": rows}, indent=2))
    plot(stats, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    if leaks:
        print(f"memory grew after warm-up in: {', '.join(leaks)}")
    errors = [b for b, r in rows.items() if r["errors"] > 0.01 * max(r["requests"], 1)]
    if errors:
        print(f"more than 1 % errors in: {', '.join(errors)}")
    return 1 if leaks or errors else 0


if __name__ == "__main__":
    sys.exit(main())
