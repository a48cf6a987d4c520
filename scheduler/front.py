"""The local front of a served bundle: one HAProxy process, two backend slots (blue, green).

BentoML's API socket does not set ``SO_REUSEPORT``, so two ``bentoml serve`` processes cannot
share the public port; HAProxy holds it and forwards to whichever slot is active. A swap
changes the idle slot's address and flips the slots through HAProxy's runtime API (its admin
socket: ``set server ... addr``, ``set server ... state ready|maint``), without reloading: client
connections, keep-alive included, are never closed, and requests already on the old slot finish
there. (An nginx ``reload`` was measured to drop keep-alive clients: old workers close idle
client connections, racing the clients' next request; 5 failures in 60 reloads here.)

Each response carries ``X-Finbento-Bento: <Bento tag>`` of the slot that answered (a runtime
map, ``tags.map``). The config and map on disk always describe the active slot, so a restarted
HAProxy serves the same thing.

Files, in the bundle's directory: ``haproxy.cfg``, ``tags.map``, ``haproxy.pid``, ``admin.sock``
(mode 600), ``haproxy.log`` (startup errors).
"""

from __future__ import annotations

import csv
import io
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)

SLOTS = ("blue", "green")
TAG_HEADER = "X-Finbento-Bento"
_UNIX_PATH_MAX = 107


class FrontError(RuntimeError):
    """HAProxy could not be started, configured or reached."""


def other(slot: str) -> str:
    """The other slot."""
    return SLOTS[1 - SLOTS.index(slot)]


class Front:
    """HAProxy in front of one bundle.

    Args:
        directory: the bundle's front directory (created).
        name: bundle name (HAProxy section names).
        host: address the public port listens on.
        port: the public port.
        haproxy_bin: HAProxy executable.

    Raises:
        FrontError: HAProxy is not installed, or the admin socket path is too long for a Unix
            socket (use a shorter state directory).
    """

    def __init__(
        self, directory: Path, name: str, host: str, port: int, haproxy_bin: str = "haproxy"
    ) -> None:
        binary = shutil.which(haproxy_bin)
        if binary is None:
            raise FrontError(f"{haproxy_bin!r} not found: install HAProxy (apt install haproxy)")
        self.bin = binary
        self.dir = Path(directory).resolve()
        self.name, self.host, self.port = name, host, port
        self.socket = self.dir / "admin.sock"
        if len(str(self.socket)) > _UNIX_PATH_MAX:
            raise FrontError(f"admin socket path too long for a Unix socket: {self.socket}")
        self.cfg, self.map = self.dir / "haproxy.cfg", self.dir / "tags.map"
        self.pidfile = self.dir / "haproxy.pid"
        self.backend = f"be_{name}"

    # --- files -------------------------------------------------------------------------------

    def write_config(self, active: str, ports: dict[str, int], tags: dict[str, str]) -> None:
        """Write ``haproxy.cfg`` and ``tags.map`` with ``active`` serving (atomic replace)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        servers = "\n".join(
            f"  server {slot} 127.0.0.1:{ports.get(slot, 1)}"
            + ("" if slot == active else " disabled")
            for slot in SLOTS
        )
        cfg = f"""# Written by finbento (scheduler/front.py); rewritten at every swap.
global
  stats socket {self.socket} mode 600 level admin
  pidfile {self.pidfile}
  log stderr format raw local0 notice

defaults
  mode http
  log global
  option dontlognull
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-request 30s
  timeout http-keep-alive 60s
  retries 3

frontend fe_{self.name}
  bind {self.host}:{self.port}
  default_backend {self.backend}

backend {self.backend}
  http-response set-header {TAG_HEADER} %[srv_name,map({self.map},unknown)]
{servers}
"""
        mapping = "".join(f"{slot} {tags.get(slot, 'none')}\n" for slot in SLOTS)
        _write_atomic(self.map, mapping)
        _write_atomic(self.cfg, cfg)

    # --- process -----------------------------------------------------------------------------

    def pid(self) -> int | None:
        """HAProxy's pid if it runs."""
        try:
            pid = int(self.pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid if process_alive(pid) else None

    def running(self) -> bool:
        """Whether HAProxy runs and answers on its admin socket."""
        if self.pid() is None:
            return False
        try:
            self.command("show info")
        except FrontError:
            return False
        return True

    def start(self, timeout_s: float = 10) -> int:
        """Start HAProxy (daemon) on the config on disk; wait for the public port and socket.

        Returns:
            its pid.

        Raises:
            FrontError: the config is invalid or HAProxy did not come up.
        """
        check = subprocess.run(
            [self.bin, "-c", "-q", "-f", str(self.cfg)], capture_output=True, text=True
        )
        if check.returncode != 0:
            raise FrontError(f"invalid HAProxy config {self.cfg}: {check.stderr.strip()}")
        with open(self.dir / "haproxy.log", "ab") as out:
            started = subprocess.run(
                [self.bin, "-D", "-f", str(self.cfg)], stdout=out, stderr=out, cwd=self.dir
            )
        if started.returncode != 0:
            raise FrontError(f"haproxy exited with {started.returncode}; see {self.dir}")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pid = self.pid()
            if pid is not None and self.socket.exists() and _accepts(self.host, self.port):
                log.info("%s: HAProxy %d on %s:%d", self.name, pid, self.host, self.port)
                return pid
            time.sleep(0.05)
        raise FrontError(f"HAProxy for {self.name} not up on {self.host}:{self.port}")

    def stop(self, timeout_s: float = 10) -> None:
        """Stop HAProxy (SIGUSR1: soft stop, finishing open requests; then SIGTERM)."""
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and process_alive(pid):
            time.sleep(0.05)
        if process_alive(pid):
            os.kill(pid, signal.SIGTERM)

    # --- runtime API -------------------------------------------------------------------------

    def command(self, line: str, timeout_s: float = 5) -> str:
        """Send one command to the admin socket; its answer.

        Raises:
            FrontError: the socket cannot be reached.
        """
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout_s)
                s.connect(str(self.socket))
                s.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := s.recv(65536):
                    chunks.append(chunk)
        except OSError as exc:
            raise FrontError(f"HAProxy admin socket {self.socket}: {exc}") from exc
        return b"".join(chunks).decode()

    def switch(self, slot: str, port: int, tag: str) -> None:
        """Point ``slot`` at 127.0.0.1:``port`` serving ``tag``, make it the only active slot.

        The other slot goes to maintenance: no new request reaches it, those on it finish.

        Raises:
            FrontError: HAProxy refused a command.
        """
        be = f"{self.backend}/{slot}"
        self._expect(f"set server {be} addr 127.0.0.1 port {port}", ("", "no need", "IP changed"))
        self._expect(f"set map {self.map} {slot} {tag}", ("",))
        self._expect(f"set server {be} state ready", ("",))
        self._expect(f"set server {self.backend}/{other(slot)} state maint", ("",))

    def sessions(self, slot: str) -> int:
        """Requests queued or in progress on ``slot`` now (``qcur + scur`` of ``show stat``)."""
        rows = csv.DictReader(io.StringIO(self.command("show stat").lstrip("# ")))
        for row in rows:
            if row.get("pxname") == self.backend and row.get("svname") == slot:
                return int(row.get("qcur") or 0) + int(row.get("scur") or 0)
        raise FrontError(f"no server {slot} in {self.backend}")

    def _expect(self, line: str, ok_prefixes: tuple[str, ...]) -> None:
        answer = self.command(line).strip()
        first = answer.splitlines()[0] if answer else ""
        if not any(first.startswith(p) if p else not first for p in ok_prefixes):
            raise FrontError(f"HAProxy refused {line!r}: {answer}")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def process_alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
