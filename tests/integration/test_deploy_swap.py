"""Local deploy: a served Bento replaced by a new build behind HAProxy, under load, with no
failed request; a Bento that does not start leaves the old one serving."""

import contextlib
import json
import os
import shutil
import threading
import time
import uuid

import httpx
import pytest
import redis

from finbento import bentos
from finbento.serving import free_port
from finbento.settings import GatePolicy, Settings
from finbento.spending_store import SpendingStore
from scheduler.deploy import DeployError, LocalDeployer
from scheduler.front import TAG_HEADER
from trainers import bento_import, registry, spending

pytestmark = pytest.mark.integration
PREFIX = f"finbento-test-{uuid.uuid4().hex[:8]}"
#: Every retrain of the same data passes: equal skill (a real gate is tested in tests/model).
SAME_DATA_GATE = GatePolicy(compare_metric="mase_skill_total", max_drop=1.0)
BODY = {"user_id": "swap", "months": 2, "ingest": False,
        "history": [{"date": f"2017-{m:02d}-05", "amount": 5000 + 100 * m,
                     "category": "Groceries"} for m in range(1, 7)]}  # fmt: skip


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory):
    """Two Bentos of the forecast bundle: spending versions 1 and 2 (``tags[i]``)."""
    if shutil.which("haproxy") is None:
        pytest.skip("HAProxy is not installed (apt-get install haproxy): no local front")
    s = Settings(state_dir=tmp_path_factory.mktemp("swap") / "s", spending_gate=SAME_DATA_GATE)
    client = registry.configure(s)
    tags, versions = [], []
    for _ in range(2):
        result = spending.train(s, sample=3)
        model = bento_import.import_version(client, "spending", result.version, spending.export)
        versions.append(result.version)
        tags.append(bentos.build("forecast", {"spending": str(model.tag)},
                                 {"spending": result.version}))  # fmt: skip
    assert len(set(tags)) == 2
    return s, tags, versions


@pytest.fixture(scope="module")
def front(two_builds):
    s, tags, versions = two_builds
    deployer = LocalDeployer(s.state_dir, env={"FINBENTO_REDIS_PREFIX": PREFIX},
                             drain_timeout_s=30, stop_timeout_s=20)  # fmt: skip
    port = free_port()
    first = deployer.deploy("forecast", tags[0], port)
    assert first.previous is None and first.served.tag == tags[0]
    yield deployer, port, tags, versions
    deployer.stop("forecast")
    with contextlib.suppress(redis.exceptions.RedisError):  # no Redis: nothing to clean
        SpendingStore.from_url("redis://127.0.0.1:6379/0", PREFIX).clear()


def predict(client: httpx.Client, port: int) -> httpx.Response:
    return client.post(f"http://127.0.0.1:{port}/predict/spending", content=json.dumps(BODY),
                       headers={"Content-Type": "application/json"}, timeout=30)  # fmt: skip


def test_swap_under_load_fails_no_request_and_the_new_tag_answers(front):
    deployer, port, tags, versions = front
    old = deployer.served("forecast")
    assert old.tag == tags[0]
    with httpx.Client() as c:
        r = predict(c, port)
        assert r.status_code == 200 and r.headers[TAG_HEADER] == tags[0]
        assert r.json()["model_version"] == versions[0]

    answers: list[tuple[float, str, str]] = []
    failures: list[str] = []
    stop = threading.Event()
    deadline = time.monotonic() + 150

    def drive(keepalive: bool) -> None:
        limits = httpx.Limits(max_keepalive_connections=1 if keepalive else 0)
        with httpx.Client(limits=limits) as client:
            while not stop.is_set() and time.monotonic() < deadline and len(answers) < 50_000:
                try:
                    r = predict(client, port)
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text[:200]}")
                    continue
                answers.append((time.monotonic(), r.headers.get(TAG_HEADER, ""),
                                r.json()["model_version"]))  # fmt: skip

    threads = [threading.Thread(target=drive, args=(k,)) for k in (True, True, True, False)]
    for t in threads:
        t.start()
    try:
        time.sleep(1)
        report = deployer.deploy("forecast", tags[1], port)
        switched = time.monotonic()
        time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join()

    figures = {
        "requests": len(answers), "failed": len(failures), "ready_s": round(report.ready_s, 2),
        "switch_s": round(report.switch_s, 3), "drain_s": round(report.drain_s, 3),
        "stop_s": round(report.stop_s, 2), "total_s": round(report.total_s, 2),
        "old_answers": sum(1 for _, tag, _ in answers if tag == tags[0]),
        "new_answers": sum(1 for _, tag, _ in answers if tag == tags[1]),
    }  # fmt: skip
    print(f"\nswap figures: {json.dumps(figures)}")
    assert failures == [], failures[:5]
    assert figures["old_answers"] > 0 and figures["new_answers"] > 0
    for _, tag, version in answers:  # the header names the Bento that really answered
        assert (tag, version) in {(tags[0], versions[0]), (tags[1], versions[1])}
    assert all(tag == tags[1] for at, tag, _ in answers if at > switched)
    new = deployer.served("forecast")
    assert report.previous.tag == tags[0] and new.tag == tags[1] and new.port != old.port
    assert new.slot != old.slot and new.front_port == port
    with pytest.raises(ProcessLookupError):
        os.kill(old.pid, 0)  # the old Bento is stopped (and reaped)
    with httpx.Client() as c:
        ready = c.get(f"http://127.0.0.1:{port}/readyz")
        assert ready.status_code == 200 and ready.headers[TAG_HEADER] == tags[1]


def test_a_bento_that_does_not_start_leaves_the_old_one_serving(front):
    deployer, port, _, _ = front
    before = deployer.served("forecast")
    with pytest.raises(DeployError, match="did not get ready"):
        deployer.deploy("forecast", "finbento-forecast:no-such-version", port)
    assert deployer.served("forecast") == before
    with httpx.Client() as c:
        r = predict(c, port)
        assert r.status_code == 200 and r.headers[TAG_HEADER] == before.tag


def test_ensure_restarts_a_stopped_front_without_restarting_the_bento(front):
    deployer, port, _, _ = front
    before = deployer.served("forecast")
    deployer.front("forecast", port).stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
    after = deployer.ensure("forecast", before.tag, port)
    assert after.pid == before.pid and after.tag == before.tag
    ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
    assert ready.status_code == 200 and ready.headers[TAG_HEADER] == before.tag
