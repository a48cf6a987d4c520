"""Recommendation latency: p50/p95/p99 and requests/s of ``POST /recommend`` at a few concurrencies.

Serves the latest recommend Bento (``finbento build --bundle recommend``) with real
``bentoml serve`` on a free port and drives it with ``wrk`` (or an asyncio client when wrk is not
installed; bench/serving.py's drivers) with one customer per request: two held products and a
profile, so both the collaborative model and the deposit propensity run. Also reports the mean
adaptive batch size of the model service. Results go to bench/results/recommend.json.

    python bench/recommend.py             # 15 s per point, concurrency 1 8 32
    python bench/recommend.py --short     # CI: 3 s per point, concurrency 1 and 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.serving import batch_sizes, batch_stats, run_asyncio, run_wrk  # noqa: E402

BODY = {
    "customer_id": "bench-1",
    "products_held": ["ind_cco_fin_ult1", "ind_recibo_ult1"],
    "profile": {"age": 42, "job": "technician", "marital": "married", "education": "high.school"},
    "k": 3,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", help="Bento tag (default: latest recommend build)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--short", action="store_true", help="CI: 3 s at concurrency 1 and 8")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "recommend.json"))
    args = parser.parse_args()
    if args.short:
        args.concurrency, args.seconds = [1, 8], 3

    from finbento.settings import get_settings

    get_settings().apply_environment()
    from finbento.bentos import latest_bento
    from finbento.serving import free_port, start_bento_server, stop_bento_server

    tag = args.tag or latest_bento("recommend")
    if tag is None:
        print("no recommend Bento: run `finbento build --bundle recommend` first", file=sys.stderr)
        return 2
    use_wrk = shutil.which("wrk") is not None
    body = json.dumps(BODY).encode()
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as body_file:
        body_file.write(body)
    print(f"Bento {tag}; load generator: {'wrk' if use_wrk else 'asyncio/httpx'}; "
          f"{args.seconds} s per point; {os.cpu_count()} cores shared with the server")  # fmt: skip
    print(f"{'conc':>5} {'req/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>7} "
          f"{'mean batch':>10}")  # fmt: skip
    port = free_port()
    proc = start_bento_server(tag, port, {})
    url = f"http://127.0.0.1:{port}/recommend"
    results = []
    try:
        first = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
        assert first.status_code == 200, first.text
        for _ in range(200):  # warm-up
            httpx.post(url, content=body, headers={"Content-Type": "application/json"})
        for conc in args.concurrency:
            before = batch_stats(port)
            if use_wrk:
                r = run_wrk(url, body_file.name, conc, args.seconds)
            else:
                r = asyncio.run(run_asyncio(url, body, conc, args.seconds))
            after = batch_stats(port)
            r.update(concurrency=conc, **batch_sizes(before, after))
            results.append(r)
            mb = f"{r['mean_batch_size']:.2f}" if r["mean_batch_size"] else "-"
            print(f"{conc:>5} {r['rps']:>9.0f} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} "
                  f"{r['p99_ms']:>8.1f} {r['errors']:>7} {mb:>10}")  # fmt: skip
    finally:
        stop_bento_server(proc)
        os.unlink(body_file.name)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"bento": tag, "route": "/recommend", "body": BODY,
                               "example": first.json(), "results": results}, indent=2))  # fmt: skip
    print(f"wrote {out}")
    failed = [r for r in results if r["requests"] == 0 or r["errors"] > 0.01 * r["requests"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
