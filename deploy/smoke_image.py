"""Build one bundle's image, run it, check /readyz, one prediction and what the image carries.

    python deploy/smoke_image.py [--bundle risk] [--port 3900] [--no-build] [--ca-bundle PEM]

Needs a container engine (``DOCKER_HOST``; deploy/engine/local-docker.sh starts one on these
machines) and a Redis for the Bento's feature store (default 127.0.0.1:6379; the container runs
with ``--network host``). Checks, each a failure when broken: the container answers ``/readyz``
within ``--ready-timeout`` seconds; one prediction answers 200 with the packaged model version;
``/metrics`` carries ``ml_model_info``; the image has no torch, no training data (csv, parquet)
and no tests. Prints the figures (image size, start-up time, prediction latency) and writes them
to bench/results/image_smoke.json. Exit status 1 on any failed check.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: bundle -> (route, body, field of the answer that must be present)
EXAMPLES: dict[str, tuple[str, dict, str]] = {
    "risk": ("/predict/credit-risk", {}, "default_probability"),
    "all": ("/predict/credit-risk", {}, "default_probability"),
    "language": ("/predict/intent", {"query": "how do I block my lost card"}, "intent"),
    "forecast": (
        "/predict/spending",
        {
            "user_id": "smoke",
            "months": 3,
            "ingest": False,
            "history": [
                {"date": f"2025-{m:02d}-05", "category": "Groceries", "amount": 9000 + 150 * m}
                for m in range(1, 13)
            ],
        },
        "forecast",
    ),
    "advisor": (
        "/advice",
        {"session_id": "smoke", "message": "What is the PPF lock-in?"},
        "answer",
    ),
}
CONTENT_CHECK = r"""
import importlib.util, os, pathlib
root = pathlib.Path(os.environ["BENTO_PATH"])
bad = [str(p) for p in root.rglob("*") if p.suffix in {".csv", ".parquet"}
       or p.name.startswith("test_") or "tests" in p.relative_to(root).parts]
print(importlib.util.find_spec("torch") is None, len(bad), *bad[:5])
"""


def engine(*args: str, timeout: float = 60) -> str:
    """Run ``docker ARGS`` and return its stdout; raises on a non-zero exit."""
    out = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if out.returncode:
        raise RuntimeError(f"docker {' '.join(args[:2])}: {out.stderr.strip()[-800:]}")
    return out.stdout.strip()


def main() -> int:
    """Run the checks; print and save the figures. Returns the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default="risk", choices=sorted(EXAMPLES))
    ap.add_argument("--port", type=int, default=3900)
    ap.add_argument("--no-build", action="store_true", help="use the bundle's latest image")
    ap.add_argument("--ca-bundle", help="extra CA certificates (PEM) for the image build")
    ap.add_argument("--ready-timeout", type=float, default=180)
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = ap.parse_args()

    from finbento.bentos import latest_bento
    from finbento.containers import image_tags
    from finbento.features.credit_risk import EXAMPLE_APPLICANT
    from finbento.settings import get_settings

    get_settings().apply_environment()
    finbento = str(Path(sys.executable).parent / "finbento")
    results: dict[str, object] = {"bundle": args.bundle}
    if not args.no_build:
        started = time.monotonic()
        cmd = [finbento, "containerize", args.bundle]
        if args.ca_bundle:
            cmd += ["--ca-bundle", args.ca_bundle]
        subprocess.run(cmd, check=True)
        results["build_s"] = round(time.monotonic() - started, 1)
    bento = latest_bento(args.bundle)
    if bento is None:
        print(f"no {args.bundle} Bento built", file=sys.stderr)
        return 1
    image = image_tags(bento)[0]
    results["image"] = image
    results["size_mb"] = round(int(engine("image", "inspect", "-f", "{{.Size}}", image)) / 1e6)
    torch_free, n_bad, *bad = engine("run", "--rm", "--entrypoint", "python", image, "-c",
                                     CONTENT_CHECK, timeout=120).split()  # fmt: skip
    results["torch_free"], results["data_or_test_files"] = torch_free == "True", int(n_bad)

    name = f"finbento-smoke-{args.bundle}"
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    url = f"http://127.0.0.1:{args.port}"
    started = time.monotonic()
    env = {"BENTOML_PORT": args.port, "FINBENTO_REDIS_URL": args.redis_url,
           "FINBENTO_REDIS_PREFIX": "finbento-smoke"}  # fmt: skip
    flags = [x for k, v in env.items() for x in ("-e", f"{k}={v}")]
    engine("run", "-d", "--name", name, "--network", "host", *flags, image)
    try:
        ready = False
        while time.monotonic() - started < args.ready_timeout:
            try:
                ready = httpx.get(url + "/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                ready = False
            if ready:
                break
            time.sleep(1)
        results["ready_s"] = round(time.monotonic() - started, 1) if ready else None
        if ready:
            route, body, field = EXAMPLES[args.bundle]
            body = body or {"applicant": EXAMPLE_APPLICANT}
            t0 = time.perf_counter()
            r = httpx.post(url + route, json=body, timeout=60)
            results["prediction_ms"] = round((time.perf_counter() - t0) * 1000, 1)
            results["prediction_status"] = r.status_code
            results["prediction_ok"] = r.status_code == 200 and field in r.json()
            results["model_info"] = "ml_model_info{" in httpx.get(url + "/metrics", timeout=10).text
        else:
            results["logs"] = engine("logs", "--tail", "30", name)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)

    checks = {
        "ready": results.get("ready_s") is not None,
        "prediction": bool(results.get("prediction_ok")),
        "metrics": bool(results.get("model_info")),
        "no torch": bool(results["torch_free"]),
        "no data or tests": results["data_or_test_files"] == 0,
    }
    results["checks"] = checks
    out = ROOT / "bench" / "results" / "image_smoke.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    if bad:
        print("data or test files in the image:", *bad, sep="\n  ")
    failed = [k for k, ok in checks.items() if not ok]
    print("FAILED: " + ", ".join(failed) if failed else "image smoke test: all checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
