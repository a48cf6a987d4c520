"""The whole unattended loop on real data: serve -> shifted traffic -> drift job -> critical ->
retrain -> gate -> new Bento built and swapped in behind the front -> every step recorded."""

import contextlib
import shutil
import time
import uuid

import httpx
import pandas as pd
import pytest
import redis

from finbento import bentos
from finbento.features.credit_risk import RAW_COLUMNS
from finbento.serving import free_port
from monitoring.drift import run_drift_check
from monitoring.prediction_log import PredictionLog
from scheduler import jobs
from scheduler.config import SchedulerConfig
from scheduler.deploy import Deployer, LocalDeployer
from scheduler.front import TAG_HEADER
from scheduler.runs import RunStore
from scheduler.steps import real_steps
from tests.conftest import ROOT
from trainers import registry

pytestmark = pytest.mark.integration
PREFIX = f"finbento-test-{uuid.uuid4().hex[:8]}"
REDIS = "redis://127.0.0.1:6379/0"
INTS = {"sex", "education", "marriage", "age", "pay_0", "pay_2", "pay_3", "pay_4", "pay_5", "pay_6"}
AMOUNTS = [c for c in RAW_COLUMNS if c.startswith(("bill_amt", "pay_amt")) or c == "limit_bal"]


def applicants(n: int, scale: float = 1.0) -> list[dict]:
    df = pd.read_csv(ROOT / "data" / "taiwan_credit_default" / "UCI_Credit_Card.csv", nrows=n)
    df.columns = [c.lower() for c in df.columns]
    df[AMOUNTS] = df[AMOUNTS] * scale
    return [{c: int(r[c]) if c in INTS else float(r[c]) for c in RAW_COLUMNS}
            for _, r in df.iterrows()]  # fmt: skip


@pytest.fixture(scope="module")
def loop(trained, tmp_path_factory):
    if shutil.which("haproxy") is None:
        pytest.skip("HAProxy is not installed (apt-get install haproxy): no local front")
    try:
        redis.Redis.from_url(REDIS).ping()
    except redis.exceptions.RedisError as exc:
        pytest.skip(f"no Redis at 127.0.0.1:6379: {exc}")
    s = trained.settings.model_copy(update={"redis_prefix": PREFIX})
    risk = ("credit-risk", "fraud", "anomaly")
    tag = bentos.build("risk", {m: trained.tags[m] for m in risk},
                       {m: trained.versions[m] for m in risk})  # fmt: skip
    port = free_port()
    config = SchedulerConfig(
        state_dir=tmp_path_factory.mktemp("loop"), serve={"risk": port}, bundles=["risk"],
        serve_env={"FINBENTO_REDIS_PREFIX": PREFIX, "FINBENTO_STATE_DIR": str(s.state_dir)},
        drain_timeout_s=30, stop_timeout_s=20,
    )  # fmt: skip
    local = LocalDeployer.from_config(config)
    local.deploy("risk", tag, port)
    yield {"settings": s, "config": config, "local": local, "port": port, "tag": tag,
           "store": RunStore(config.url), "client": registry.configure(s)}  # fmt: skip
    local.stop("risk")
    with contextlib.suppress(redis.exceptions.RedisError):
        PredictionLog(REDIS, PREFIX).clear()


def score(loop, batch):
    log = PredictionLog(REDIS, PREFIX)
    r = redis.Redis.from_url(REDIS)
    before = r.xlen(log.key("credit-risk"))
    url = f"http://127.0.0.1:{loop['port']}/predict/credit-risk/batch"
    answer = httpx.post(url, json={"applicants": batch}, timeout=60)
    assert answer.status_code == 200, answer.text
    for _ in range(40):  # the prediction log is written off the request path
        if r.xlen(log.key("credit-risk")) >= before + len(batch):
            break
        time.sleep(0.25)
    return answer


def test_shifted_traffic_drifts_retrains_and_a_new_bento_serves(loop):
    s, store = loop["settings"], loop["store"]
    before = str(registry.get_alias(loop["client"], "credit-risk").version)
    score(loop, applicants(300, scale=3.0))  # amounts three times what the model learned from

    def check(model):
        return run_drift_check(s, model, 300, directory=loop["config"].state_dir / "drift",
                               prediction_log=PredictionLog(REDIS, PREFIX))  # fmt: skip

    triggered, events = [], []
    drift = jobs.drift_check(["credit-risk"], store, check, notify=events.append,
                             trigger_retrain=lambda m, why: triggered.append((m, why)))  # fmt: skip
    assert drift.outcome == "success", drift.reason
    assert "critical" in drift.reason and [m for m, _ in triggered] == ["credit-risk"]
    assert ("drift", "critical") in [(e.kind, e.severity) for e in events]

    steps = real_steps(s, Deployer(loop["config"]), sample={"credit-risk": 4000})
    run = jobs.retrain("credit-risk", store, steps, bundles=["risk"], notify=events.append,
                       trigger="drift")  # fmt: skip
    assert run.outcome == "success", run.reason  # same data, same seed: the gate lets it through
    after = str(registry.get_alias(loop["client"], "credit-risk").version)
    assert int(after) == int(before) + 1
    assert run.versions_before == {"credit-risk": before}
    assert run.versions_after == {"credit-risk": after}
    new_tag = run.bento_tags["risk"]
    assert new_tag != loop["tag"] and f"cr{after}-" in new_tag
    assert loop["local"].served("risk").tag == new_tag
    answer = score(loop, applicants(5))
    assert answer.headers[TAG_HEADER] == new_tag
    assert {p["model_version"] for p in answer.json()["predictions"]} == {after}
    recorded = [(r.job, r.outcome) for r in store.recent(5)]
    assert ("drift-check", "success") in recorded and ("retrain-credit-risk", "success") in recorded
    assert ("promotion", "info") in [(e.kind, e.severity) for e in events]
