"""Deploy a new Bento tag: locally (a swap behind HAProxy) and through the ops hooks.

**Local** (:class:`LocalDeployer`, for bundles in ``SchedulerConfig.serve``): start ``bentoml
serve <new tag>`` on a free port, wait for its ``/readyz``, switch the bundle's front
(:mod:`scheduler.front`) to it, confirm through the public port that the new tag answers, wait
until no request is left on the old Bento (``drain_timeout_s``), then stop the old one (SIGTERM
to its process group, SIGKILL after ``stop_timeout_s``). If the new Bento does not get ready, it
is stopped and the old one keeps serving. The state of each bundle is kept in
``<state_dir>/served/<bundle>.json``::

    {"bundle": "all", "tag": "finbento:cr4-...", "port": 41871, "pid": 12345, "slot": "green",
     "front_port": 3000, "front_pid": 12001, "deployed_at": "2026-12-01T08:00:00+00:00"}

**Ops hooks** (for every built bundle, when configured): ``deploy_command``, a command line run
without a shell, with ``{bundle}``, ``{tag}`` and ``{models}`` (comma-separated) substituted and
``FINBENTO_DEPLOY_BUNDLE`` / ``FINBENTO_DEPLOY_TAG`` / ``FINBENTO_DEPLOY_MODELS`` in its
environment, e.g. ``bentoml containerize {tag} -t registry.example.com/finbento:{bundle}``;
and ``deploy_webhook_url``, which receives ``POST {"bundle", "tag", "models"}`` (JSON, with
``Authorization: Bearer <deploy_webhook_token>`` if set). A non-zero exit or a non-2xx answer
fails the deploy.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shlex
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from finbento.serving import free_port, start_bento_server
from scheduler.config import SchedulerConfig
from scheduler.front import SLOTS, TAG_HEADER, Front, FrontError, other, process_alive

log = logging.getLogger(__name__)


class DeployError(RuntimeError):
    """A deploy did not happen; whatever served before still serves."""


@dataclass
class Served:
    """What serves a bundle locally (the state file's content)."""

    bundle: str
    tag: str
    port: int
    pid: int
    slot: str
    front_port: int
    front_pid: int | None = None
    deployed_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())


@dataclass
class SwapReport:
    """How a local deploy went, seconds per stage.

    Attributes:
        served: the new state.
        previous: what served before (None on a first deploy).
        ready_s: start of the new Bento until its /readyz answered.
        switch_s: the switch until the public port answered with the new tag.
        drain_s: waiting for the old Bento's in-flight requests.
        stop_s: stopping the old Bento.
        total_s: the whole deploy.
    """

    served: Served
    previous: Served | None
    ready_s: float = 0.0
    switch_s: float = 0.0
    drain_s: float = 0.0
    stop_s: float = 0.0
    total_s: float = 0.0


class LocalDeployer:
    """Serve bundles on this machine behind their HAProxy fronts, swapping without downtime.

    Args:
        state_dir: the state directory; files go to ``<state_dir>/served``.
        host: address the fronts listen on.
        env: extra environment of ``bentoml serve``.
        ready_timeout_s: limit on a new Bento's start (s).
        drain_timeout_s: limit on the old Bento's in-flight requests (s).
        stop_timeout_s: SIGTERM to SIGKILL of the old Bento (s).
        haproxy_bin: HAProxy executable.
    """

    def __init__(
        self,
        state_dir: Path,
        host: str = "127.0.0.1",
        env: dict[str, str] | None = None,
        ready_timeout_s: float = 300,
        drain_timeout_s: float = 60,
        stop_timeout_s: float = 30,
        haproxy_bin: str = "haproxy",
    ) -> None:
        self.dir = Path(state_dir).resolve() / "served"
        self.host, self.env = host, dict(env or {})
        self.ready_timeout_s, self.drain_timeout_s = ready_timeout_s, drain_timeout_s
        self.stop_timeout_s, self.haproxy_bin = stop_timeout_s, haproxy_bin

    @classmethod
    def from_config(cls, config: SchedulerConfig) -> LocalDeployer:
        """The deployer a :class:`SchedulerConfig` describes."""
        return cls(
            config.state_path, config.serve_host, config.serve_env, config.ready_timeout_s,
            config.drain_timeout_s, config.stop_timeout_s, config.haproxy_bin,
        )  # fmt: skip

    # --- state -------------------------------------------------------------------------------

    def state_file(self, bundle: str) -> Path:
        """``<state_dir>/served/<bundle>.json``."""
        return self.dir / f"{bundle}.json"

    def served(self, bundle: str) -> Served | None:
        """What the state file says serves ``bundle`` (None if nothing was deployed)."""
        try:
            return Served(**json.loads(self.state_file(bundle).read_text()))
        except FileNotFoundError:
            return None

    def front(self, bundle: str, port: int) -> Front:
        """The bundle's HAProxy front."""
        return Front(self.dir / bundle, bundle, self.host, port, self.haproxy_bin)

    def _save(self, served: Served) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.state_file(served.bundle)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(served), indent=2))
        os.replace(tmp, path)

    @contextlib.contextmanager
    def _locked(self, bundle: str) -> Iterator[None]:
        """One deploy of a bundle at a time on this machine (flock)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / f"{bundle}.lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # --- deploy ------------------------------------------------------------------------------

    def deploy(self, bundle: str, tag: str, front_port: int) -> SwapReport:
        """Serve ``tag`` for ``bundle`` on ``front_port``, replacing what served (if anything).

        Args:
            bundle: bundle name (a key of ``finbento.bentos.BUNDLES``).
            tag: the Bento tag to serve (in the local Bento store).
            front_port: the public port.

        Returns:
            the new state and the timings.

        Raises:
            DeployError: the new Bento did not start or HAProxy failed before the switch;
                the old Bento (if any) still serves.
        """
        with self._locked(bundle):
            return self._deploy(bundle, tag, front_port)

    def _deploy(self, bundle: str, tag: str, front_port: int) -> SwapReport:
        t0 = time.monotonic()
        previous = self.served(bundle)
        if previous is not None and not _is_bento(previous.pid):
            log.warning("%s: %s (pid %d) is gone", bundle, previous.tag, previous.pid)
            previous = None
        if previous is not None and previous.front_port != front_port:
            raise DeployError(
                f"{bundle} is served on port {previous.front_port}, not {front_port}: "
                "stop it first (LocalDeployer.stop)"
            )
        front = self.front(bundle, front_port)
        slot = other(previous.slot) if previous else SLOTS[0]
        port = free_port()
        log_file = self.dir / bundle / "logs" / f"{tag.replace(':', '-')}.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log.info("%s: starting %s on 127.0.0.1:%d (slot %s)", bundle, tag, port, slot)
        try:
            proc = start_bento_server(tag, port, self.env, self.ready_timeout_s, log_file)
        except RuntimeError as exc:
            raise DeployError(f"{bundle}: {tag} did not get ready ({exc}); see {log_file}") from exc
        report = SwapReport(Served(bundle, tag, port, proc.pid, slot, front_port), previous)
        report.ready_s = time.monotonic() - t0
        t1 = time.monotonic()
        ports = {slot: port}
        tags = {slot: tag}
        if previous is not None:
            ports[previous.slot], tags[previous.slot] = previous.port, previous.tag
        try:
            if front.running():
                front.switch(slot, port, tag)
                front.write_config(slot, ports, tags)
            else:
                front.write_config(slot, ports, tags)
                front.start()
            _wait_for_tag(self.host, front_port, tag, timeout_s=10)
        except (FrontError, DeployError) as exc:
            self._revert(front, previous, ports, tags)
            _stop_group(proc.pid, self.stop_timeout_s)
            raise DeployError(f"{bundle}: switching to {tag} failed: {exc}") from exc
        report.served.front_pid = front.pid()
        self._save(report.served)
        report.switch_s = time.monotonic() - t1
        log.info("%s: %s answers on %s:%d", bundle, tag, self.host, front_port)
        if previous is not None:
            t2 = time.monotonic()
            _drain(front, previous.slot, self.drain_timeout_s)
            report.drain_s = time.monotonic() - t2
            t3 = time.monotonic()
            _stop_group(previous.pid, self.stop_timeout_s)
            report.stop_s = time.monotonic() - t3
            log.info("%s: stopped %s (pid %d)", bundle, previous.tag, previous.pid)
        report.total_s = time.monotonic() - t0
        return report

    def _revert(
        self, front: Front, previous: Served | None, ports: dict, tags: dict
    ) -> None:  # pragma: no cover - only on HAProxy failures
        if previous is None:
            return
        with contextlib.suppress(FrontError):
            front.write_config(previous.slot, ports, tags)
            if front.running():
                front.switch(previous.slot, previous.port, previous.tag)

    def ensure(self, bundle: str, tag: str, front_port: int) -> Served:
        """Serve ``tag`` unless it already serves; restart a front that stopped.

        Returns:
            what serves now.
        """
        with self._locked(bundle):
            served = self.served(bundle)
            if served and served.tag == tag and _is_bento(served.pid):
                front = self.front(bundle, served.front_port)
                if not front.running():
                    front.start()
                    served.front_pid = front.pid()
                    self._save(served)
                return served
            return self._deploy(bundle, tag, front_port).served

    def stop(self, bundle: str) -> None:
        """Stop the bundle's Bento and front and forget its state."""
        with self._locked(bundle):
            served = self.served(bundle)
            if served is None:
                return
            with contextlib.suppress(FrontError):
                self.front(bundle, served.front_port).stop()
            if _is_bento(served.pid):
                _stop_group(served.pid, self.stop_timeout_s)
            self.state_file(bundle).unlink(missing_ok=True)


# --- ops hooks -------------------------------------------------------------------------------


def run_command_hook(
    command: str, bundle: str, tag: str, models: Sequence[str], timeout_s: float = 600
) -> None:
    """Run the ops deploy command for a new Bento (see the module docstring).

    Raises:
        DeployError: it exited non-zero, timed out or could not start.
    """
    values = {"bundle": bundle, "tag": tag, "models": ",".join(models)}
    argv = shlex.split(command)
    for key, value in values.items():  # only these three: other braces stay as they are
        argv = [arg.replace(f"{{{key}}}", value) for arg in argv]
    env = {
        **os.environ,
        "FINBENTO_DEPLOY_BUNDLE": bundle,
        "FINBENTO_DEPLOY_TAG": tag,
        "FINBENTO_DEPLOY_MODELS": values["models"],
    }
    log.info("%s: deploy command %s", bundle, argv[0] if argv else "")
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeployError(f"deploy command for {tag}: {exc}") from exc
    if done.returncode != 0:
        raise DeployError(
            f"deploy command for {tag} exited with {done.returncode}: "
            f"{(done.stderr or done.stdout).strip()[-1000:]}"
        )


def post_webhook(
    url: str,
    bundle: str,
    tag: str,
    models: Sequence[str],
    token: str | None = None,
    timeout_s: float = 30,
) -> None:
    """POST ``{"bundle", "tag", "models"}`` to the ops deploy webhook.

    Raises:
        DeployError: no 2xx answer (the URL is not repeated in the message).
    """
    body = json.dumps({"bundle": bundle, "tag": tag, "models": list(models)}).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "finbento-scheduler/1"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            status = answer.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        raise DeployError(f"deploy webhook for {tag}: {exc}") from exc
    if not 200 <= status < 300:
        raise DeployError(f"deploy webhook for {tag} answered {status}")


class Deployer:
    """What a retrain calls for each new Bento: local swap and/or ops hooks, as configured.

    Args:
        config: the scheduler config (``serve``, ``deploy_command``, ``deploy_webhook_url``).
        local: the local deployer (default from ``config``).
    """

    def __init__(self, config: SchedulerConfig, local: LocalDeployer | None = None) -> None:
        self.config = config
        self.local = local or LocalDeployer.from_config(config)

    def targets(self, bundle: str) -> list[str]:
        """Where a new Bento of ``bundle`` goes: ``local:<port>``, ``command``, ``webhook``."""
        out = [f"local:{self.config.serve[bundle]}"] if bundle in self.config.serve else []
        if self.config.deploy_command:
            out.append("command")
        if self.config.deploy_webhook_url:
            out.append("webhook")
        return out

    def __call__(self, bundle: str, tag: str, models: Sequence[str]) -> list[str]:
        """Deploy ``tag`` to every target of ``bundle``.

        Returns:
            the targets done, e.g. ``["local:3000", "webhook"]`` (empty: none configured).

        Raises:
            DeployError: a target failed (the ones before it are done).
        """
        c = self.config
        done = []
        for target in self.targets(bundle):
            if target.startswith("local:"):
                report = self.local.deploy(bundle, tag, c.serve[bundle])
                log.info(
                    "%s: swapped to %s in %.1f s (ready %.1f s, switch %.2f s, drain %.1f s)",
                    bundle, tag, report.total_s, report.ready_s, report.switch_s, report.drain_s,
                )  # fmt: skip
            elif target == "command":
                run_command_hook(c.deploy_command, bundle, tag, models, c.deploy_hook_timeout_s)
            else:
                secret = c.deploy_webhook_token
                token = secret.get_secret_value() if secret else None
                post_webhook(
                    c.deploy_webhook_url, bundle, tag, models, token, c.deploy_hook_timeout_s
                )
            done.append(target)
        return done


# --- helpers ---------------------------------------------------------------------------------


def _is_bento(pid: int) -> bool:
    """Whether ``pid`` is a live ``bentoml serve`` (not a recycled pid)."""
    if not process_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(part.endswith(b"bentoml") for part in cmdline) and b"serve" in cmdline


def _wait_for_tag(host: str, port: int, tag: str, timeout_s: float) -> None:
    """Until the public port's /readyz answers 200 from ``tag`` (three times in a row)."""
    deadline, in_a_row = time.monotonic() + timeout_s, 0
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/readyz", timeout=2) as r:
                last = r.headers.get(TAG_HEADER, "")
                in_a_row = in_a_row + 1 if r.status == 200 and last == tag else 0
        except (urllib.error.URLError, OSError) as exc:
            last, in_a_row = str(exc), 0
        if in_a_row >= 3:
            return
        time.sleep(0.05)
    raise DeployError(f"{host}:{port} does not answer from {tag} (last: {last})")


def _drain(front: Front, slot: str, timeout_s: float) -> None:
    """Until no request is queued or in progress on ``slot`` (or the timeout)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if front.sessions(slot) == 0:
                return
        except FrontError as exc:
            log.warning("cannot read %s's sessions: %s", slot, exc)
            return
        time.sleep(0.1)
    log.warning("slot %s still busy after %.0f s: stopping it anyway", slot, timeout_s)


def _stop_group(pid: int, timeout_s: float) -> None:
    """SIGTERM to the process group of ``pid`` (``bentoml serve`` leads its own), then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    if _wait_gone(pid, timeout_s):
        return
    log.warning("pid %d still running %.0f s after SIGTERM: SIGKILL", pid, timeout_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    _wait_gone(pid, 10)


def _wait_gone(pid: int, timeout_s: float) -> bool:
    """Until ``pid`` no longer exists (reaping it if it is our child); whether it is gone."""
    deadline = time.monotonic() + timeout_s
    while True:
        _reap(pid)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        if _foreign_zombie(pid):  # exited; its parent (PID 1 in some containers) must reap it
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _foreign_zombie(pid: int) -> bool:
    """Whether ``pid`` has exited and waits to be reaped by a process other than this one."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] == "Z" and int(fields[1]) != os.getpid()


def _reap(pid: int) -> None:
    """Collect ``pid``'s exit status if it is our child (no zombie left)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
