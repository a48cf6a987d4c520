"""Load on every public route of a served Bento: requests/s, p50/p95/p99 and errors per route.

Drives each prediction route of the all-in-one Bento (bench/bodies.py) with wrk at concurrency
1, 8, 32 and 64 (``--concurrency``), one route at a time, the prediction cache off (so every
request is scored), and prints one row per (route, concurrency) with the mean adaptive batch size
seen on ``/metrics`` (``-`` for routes scored in the API worker). Results:
bench/results/load.json and load.png (requests/s and p99 per route against concurrency).

    python bench/load.py                      # 10 s per point
    python bench/load.py --short              # 2 s per point, concurrency 1 and 32

The same credit-risk model under ``mlflow models serve`` and plain FastAPI: bench/compare.py;
resident memory over minutes of load: bench/memory.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bodies import bodies  # noqa: E402
from bench.serving import batch_sizes, batch_stats, run_wrk  # noqa: E402


def plot(results: list[dict], path: Path) -> None:
    """Requests/s and p99 against concurrency, one line per route."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    for route in dict.fromkeys(r["route"] for r in results):
        rows = [r for r in results if r["route"] == route]
        conc = [r["concurrency"] for r in rows]
        a.plot(conc, [r["rps"] for r in rows], marker="o", label=route)
        b.plot(conc, [r["p99_ms"] for r in rows], marker="o", label=route)
    for ax, title in ((a, "requests/s"), (b, "p99 latency, ms")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrency")
        ax.set_title(title)
    b.legend(fontsize=7)
    fig.suptitle("all-in-one Bento, prediction cache off, wrk on the same cores")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    """Serve the latest all-in-one Bento and drive each route; print and save the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--short", action="store_true")
    args = ap.parse_args()
    if args.short:
        args.concurrency, args.seconds = [1, 32], 2

    from finbento.settings import get_settings

    get_settings().apply_environment()
    from finbento.bentos import latest_bento
    from finbento.serving import free_port, start_bento_server, stop_bento_server

    tag = latest_bento("all")
    if tag is None:
        print("no all-in-one Bento built: run `finbento build`", file=sys.stderr)
        return 2
    port = free_port()
    proc = start_bento_server(tag, port, {"FINBENTO_PREDICTION_CACHE_TTL_S": "0"})
    results = []
    print(f"{'route':<24} {'conc':>5} {'req/s':>8} {'p50':>7} {'p95':>7} {'p99':>7} "
          f"{'errors':>6} {'batch':>6}")  # fmt: skip
    try:
        for route, body in bodies().items():
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
                json.dump(body, f)
            for conc in args.concurrency:
                before = batch_stats(port)
                r = run_wrk(f"http://127.0.0.1:{port}{route}", f.name, conc, args.seconds)
                after = batch_stats(port)
                r.update(route=route, concurrency=conc, **batch_sizes(before, after))
                results.append(r)
                mb = f"{r['mean_batch_size']:.1f}" if r["mean_batch_size"] else "-"
                ms = " ".join(f"{r[k]:>7.1f}" for k in ("p50_ms", "p95_ms", "p99_ms"))
                print(f"{route:<24} {conc:>5} {r['rps']:>8.0f} {ms} {r['errors']:>6} {mb:>6}")
            Path(f.name).unlink()
    finally:
        stop_bento_server(proc)
    out = ROOT / "bench" / "results" / "load.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"bento": tag, "results": results}, indent=2))
    plot(results, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 1 if any(r["errors"] > 0.01 * max(r["requests"], 1) for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
