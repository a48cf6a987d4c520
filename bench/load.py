"""Load on every public route of a served Bento: requests/s, p50/p95/p99 and errors per route.

WORK IN PROGRESS (issue 9): drives each route of the all-in-one Bento with wrk at concurrency
1, 8, 32 and 64 (``--concurrency``), one route at a time, the prediction cache off (so every request
is scored), and prints one row per (route, concurrency) with the mean adaptive batch size seen on
``/metrics``. Results: bench/results/load.json and bench/results/load.png.

    python bench/load.py                      # 10 s per point
    python bench/load.py --short              # 2 s per point, concurrency 1 and 32

Still to do: the ``--compare`` mode (the same credit-risk model under ``mlflow models serve`` and a
plain FastAPI + uvicorn app, ratios from one run) and the resident-memory report.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.serving import batch_size_stats, run_wrk  # noqa: E402


def bodies() -> dict[str, dict]:
    """Route -> one valid request body (shipped examples)."""
    from finbento.features.credit_risk import EXAMPLE_APPLICANT

    tx = {"transaction_id": "load-1", "tx_datetime": "2018-08-20T10:15:00",
          "customer_id": "load-c1", "terminal_id": "load-t1", "tx_amount": 42.5}  # fmt: skip
    return {
        "/predict/credit-risk": {"applicant": EXAMPLE_APPLICANT},
        "/predict/fraud": {"transaction": tx, "ingest": False},
        "/predict/anomaly": {"transaction": tx, "ingest": False},
        "/predict/intent": {"query": "I still have not received my new card"},
        "/predict/ner": {"text": "Pay Rs 1,200 to Airtel on Friday"},
        "/predict/category": {"description": "POS Purchase Woolworths Sandton", "amount": -250.0},
        "/recommend": {"products_held": ["ind_cco_fin_ult1"], "k": 3},
    }


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
                s0, c0 = batch_size_stats(port)
                r = run_wrk(f"http://127.0.0.1:{port}{route}", f.name, conc, args.seconds)
                s1, c1 = batch_size_stats(port)
                r.update(route=route, concurrency=conc,
                         mean_batch_size=(s1 - s0) / (c1 - c0) if c1 > c0 else None)  # fmt: skip
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
    print(f"wrote {out}")
    return 1 if any(r["errors"] > 0.01 * max(r["requests"], 1) for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
