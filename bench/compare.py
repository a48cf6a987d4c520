"""Credit-risk served three ways in one run: the Bento, ``mlflow models serve``, plain FastAPI.

The same registered credit-risk version is served three ways, one after the other on the same
machine (wrk shares its cores), each driven at the same concurrency after a warm-up:

- **bento**: ``bentoml serve`` of the latest risk Bento, ``POST /predict/credit-risk`` (validation,
  score, reasons, prediction log, metrics; the Redis prediction cache off, so every request is
  scored);
- **mlflow**: ``mlflow models serve -m models:/credit-risk/VERSION --env-manager local`` (the raw
  booster on the 29 engineered features: no calibration, reasons or validation; less work);
- **fastapi**: bench/fastapi_credit_risk.py under ``uvicorn --workers N``, N = the processes the
  Bento serves credit-risk with (its API workers, plus the model service's if the route calls one).

Prints requests/s, p50/p95/p99 and errors per server, the ratios bento/mlflow and bento/fastapi
and the targets of issue 9 (>= 5x mlflow, >= fastapi, p99 < 100 ms at concurrency 32); writes
bench/results/compare.json and compare.png.

    python bench/compare.py                  # 15 s per server at concurrency 32
    python bench/compare.py --short          # CI: 4 s per server
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.serving import run_wrk  # noqa: E402

TARGET_VS_MLFLOW = 5.0
TARGET_P99_MS = 100.0


def wait_ready(url: str, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    """Poll ``url`` until it answers 200.

    Raises:
        RuntimeError: if ``proc`` exits or ``url`` is not ready within ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        time.sleep(0.3)
    raise RuntimeError(f"{url} not ready after {timeout_s} s")


def resident_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, MiB."""
    import psutil

    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    return sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20


def serving_processes(pid: int, names: tuple[str, ...]) -> int:
    """How many processes under ``pid`` run one of the BentoML services ``names``."""
    import psutil

    cmdlines = [" ".join(p.cmdline()) for p in psutil.Process(pid).children(recursive=True)]
    return sum(any(f"--service-name {n}" in c or f"service-name={n}" in c for n in names)
               for c in cmdlines)  # fmt: skip


def drive(
    name: str, url: str, body: dict, proc: subprocess.Popen, args: argparse.Namespace
) -> dict:
    """Warm ``url`` up, then run wrk at ``args.concurrency`` for ``args.seconds``; add memory."""
    import httpx

    data = json.dumps(body).encode()
    for _ in range(200):
        r = httpx.post(url, content=data, headers={"Content-Type": "application/json"})
        r.raise_for_status()
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as f:
        f.write(data)
    try:
        result = run_wrk(url, f.name, args.concurrency, args.seconds)
    finally:
        os.unlink(f.name)
    result.update(server=name, concurrency=args.concurrency, resident_mb=resident_mb(proc.pid))
    return result


def stop(proc: subprocess.Popen) -> None:
    """Stop a server started here and everything it started."""
    from finbento.serving import stop_bento_server

    stop_bento_server(proc)


def plot(results: list[dict], path: Path) -> None:
    """Bar chart of requests/s and p99 per server."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["server"] for r in results]
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.2))
    a.bar(names, [r["rps"] for r in results], color="#4c72b0")
    a.set_title(f"requests/s at concurrency {results[0]['concurrency']}")
    b.bar(names, [r["p99_ms"] for r in results], color="#dd8452")
    b.axhline(TARGET_P99_MS, color="grey", linestyle="--", linewidth=1)
    b.set_title("p99 latency, ms")
    fig.suptitle("/predict/credit-risk, same model, same machine")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    """Serve the model three ways in turn, drive each, print ratios, save JSON and a plot."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default="risk", help="the Bento bundle to compare (risk or all)")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--short", action="store_true", help="CI: 4 s per server")
    args = ap.parse_args()
    if args.short:
        args.seconds = 4

    from finbento.settings import get_settings

    settings = get_settings()
    settings.apply_environment()
    import bentoml
    import numpy as np

    from finbento.bentos import latest_bento
    from finbento.features.credit_risk import (
        EXAMPLE_APPLICANT,
        FEATURES,
        Applicant,
        feature_matrix,
        raw_matrix,
    )
    from finbento.serving import free_port, start_bento_server

    tag = latest_bento(args.bundle)
    if tag is None:
        print(f"no {args.bundle} Bento built: run `finbento build --bundle {args.bundle}`")
        return 2
    labels = bentoml.get(tag).info.labels
    model_tag, version = labels["credit-risk.bento_model"], labels["credit-risk"]
    model_dir = bentoml.models.get(model_tag).path
    features = feature_matrix(raw_matrix([Applicant.model_validate(EXAMPLE_APPLICANT)]))
    mlflow_body = {"dataframe_split": {"columns": list(FEATURES),
                                       "data": np.asarray(features).tolist()}}  # fmt: skip
    bento_body = {"applicant": EXAMPLE_APPLICANT}
    print(f"Bento {tag}, credit-risk v{version}; wrk c={args.concurrency}, {args.seconds} s per "
          f"server; {os.cpu_count()} cores shared with the load generator")  # fmt: skip

    results: list[dict] = []
    port = free_port()
    proc = start_bento_server(tag, port, {"FINBENTO_PREDICTION_CACHE_TTL_S": "0"})
    try:
        results.append(drive("bento", f"http://127.0.0.1:{port}/predict/credit-risk",
                             bento_body, proc, args))  # fmt: skip
        workers = serving_processes(proc.pid, ("finbento-risk", "finbento", "credit-risk"))
    finally:
        stop(proc)
    results[-1]["processes"] = workers

    bin_dir = str(Path(sys.executable).parent)  # mlflow runs `uvicorn` from PATH
    env = {**os.environ, "MLFLOW_TRACKING_URI": settings.tracking_uri,
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}  # fmt: skip
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m",
           f"models:/credit-risk/{version}", "--env-manager", "local", "-h", "127.0.0.1",
           "-p", str(port)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    try:
        wait_ready(f"http://127.0.0.1:{port}/ping", proc)
        results.append(drive("mlflow", f"http://127.0.0.1:{port}/invocations",
                             mlflow_body, proc, args))  # fmt: skip
        results[-1]["processes"] = 1
    finally:
        stop(proc)

    port = free_port()
    cmd = [str(Path(sys.executable).parent / "uvicorn"), "bench.fastapi_credit_risk:app",
           "--host", "127.0.0.1", "--port", str(port), "--workers", str(max(workers, 1)),
           "--no-access-log", "--log-level", "warning"]  # fmt: skip
    env = {**os.environ, "FINBENTO_BENCH_MODEL_DIR": model_dir,
           "FINBENTO_BENCH_MODEL_VERSION": version}  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        wait_ready(f"http://127.0.0.1:{port}/docs", proc)
        results.append(drive("fastapi", f"http://127.0.0.1:{port}/predict/credit-risk",
                             bento_body, proc, args))  # fmt: skip
        results[-1]["processes"] = max(workers, 1)
    finally:
        stop(proc)

    print(f"{'server':<8} {'procs':>5} {'req/s':>8} {'p50':>7} {'p95':>7} {'p99':>7} "
          f"{'errors':>6} {'RSS MiB':>8}")  # fmt: skip
    for r in results:
        ms = " ".join(f"{r[k]:>7.1f}" for k in ("p50_ms", "p95_ms", "p99_ms"))
        print(f"{r['server']:<8} {r['processes']:>5} {r['rps']:>8.0f} {ms} {r['errors']:>6} "
              f"{r['resident_mb']:>8.0f}")  # fmt: skip
    ours, mlflow_, fastapi_ = results
    ratios = {"bento_vs_mlflow": ours["rps"] / mlflow_["rps"],
              "bento_vs_fastapi": ours["rps"] / fastapi_["rps"]}  # fmt: skip
    targets = {
        f"bento >= {TARGET_VS_MLFLOW:g}x mlflow": ratios["bento_vs_mlflow"] >= TARGET_VS_MLFLOW,
        "bento >= fastapi": ratios["bento_vs_fastapi"] >= 1.0,
        f"bento p99 < {TARGET_P99_MS:g} ms": ours["p99_ms"] < TARGET_P99_MS,
    }
    print(f"bento/mlflow {ratios['bento_vs_mlflow']:.2f}x, "
          f"bento/fastapi {ratios['bento_vs_fastapi']:.2f}x")  # fmt: skip
    for name, met in targets.items():
        print(f"  {'met' if met else 'MISSED'}: {name}")
    out = ROOT / "bench" / "results" / "compare.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"bento": tag, "model_version": version, "results": results,
                               "ratios": ratios, "targets": targets}, indent=2))  # fmt: skip
    plot(results, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 1 if any(r["errors"] > 0.01 * max(r["requests"], 1) for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
