"""Start and stop a real ``bentoml serve`` process (benchmarks, integration tests)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_bento_server(
    tag: str,
    port: int,
    env: dict[str, str] | None = None,
    timeout_s: float = 120,
    log_file: Path | None = None,
) -> subprocess.Popen:
    """Run ``bentoml serve TAG`` on 127.0.0.1:PORT and wait until ``/readyz`` answers 200.

    Args:
        tag: Bento tag (or a service import path).
        port: port to listen on.
        env: extra environment variables for the server.
        timeout_s: how long to wait for readiness, seconds.
        log_file: where the server's output goes (discarded if None).

    Returns:
        the server process (its own process group; stop it with :func:`stop_bento_server`).

    Raises:
        RuntimeError: if the server exits or is not ready in time (the process is stopped).
    """
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "bentoml"), "serve", tag,
         "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"bentoml serve {tag} exited with {proc.returncode}")
        time.sleep(0.3)
    stop_bento_server(proc)
    raise RuntimeError(f"bentoml serve {tag} not ready after {timeout_s} s")


def stop_bento_server(proc: subprocess.Popen, timeout_s: float = 20) -> None:
    """Stop the server and its workers (SIGTERM to the group, SIGKILL if it lingers)."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
