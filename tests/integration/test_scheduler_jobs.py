"""The scheduler's jobs for real: retrain on the shipped data, the gate, the Bento build, the local
swap and the ops hook; faults half-way leave the champion and what serves as they were; the job
store, run records and locks on PostgreSQL."""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import uuid

import httpx
import pytest
import redis

from finbento import bentos
from finbento.serving import free_port
from finbento.settings import GatePolicy, Settings
from finbento.spending_store import SpendingStore
from scheduler import daemon, jobs
from scheduler.config import SchedulerConfig
from scheduler.deploy import Deployer, LocalDeployer
from scheduler.front import TAG_HEADER
from scheduler.runs import RunStore, record_run
from scheduler.steps import real_steps
from tests.conftest import sample_policy
from trainers import bento_import, credit_risk, registry, spending

pytestmark = pytest.mark.integration
PREFIX = f"finbento-test-{uuid.uuid4().hex[:8]}"
PG = os.environ.get("FINBENTO_TEST_POSTGRES", "postgresql://root@127.0.0.1:5432")
#: Every retrain of the same data passes: equal skill (a real gate is tested in tests/model).
SAME_DATA_GATE = GatePolicy(compare_metric="mase_skill_total", max_drop=1.0)
SAMPLES = {"spending": 3, "credit-risk": 2500}
BODY = {"user_id": "loop", "months": 2, "ingest": False,
        "history": [{"date": f"2017-{m:02d}-05", "amount": 5000 + 100 * m,
                     "category": "Groceries"} for m in range(1, 7)]}  # fmt: skip


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    """spending v1 champion, its forecast Bento served behind the front; the scheduler config."""
    if shutil.which("haproxy") is None:
        pytest.skip("HAProxy is not installed (apt-get install haproxy): no local front")
    root = tmp_path_factory.mktemp("loop")
    s = Settings(state_dir=root / "s", spending_gate=SAME_DATA_GATE,
                 credit_risk_gate=sample_policy())  # fmt: skip
    client = registry.configure(s)
    first = spending.train(s, sample=SAMPLES["spending"])
    model = bento_import.import_champion(client, "spending", spending.export)
    tag = bentos.build("forecast", {"spending": str(model.tag)}, {"spending": first.version})
    port = free_port()
    config = SchedulerConfig(
        state_dir=s.state_dir, serve={"forecast": port}, bundles=["forecast"],
        serve_env={"FINBENTO_REDIS_PREFIX": PREFIX}, drain_timeout_s=30, stop_timeout_s=20,
        deploy_command=f"{sys.executable} -c \"import sys; open(sys.argv[1], 'a')"
                       f".write(sys.argv[2] + '\\n')\" {root / 'hook.txt'} {{tag}}",
    )  # fmt: skip
    local = LocalDeployer.from_config(config)
    local.deploy("forecast", tag, port)
    yield {"settings": s, "config": config, "client": client, "local": local, "port": port,
           "store": RunStore(config.url), "hook": root / "hook.txt"}  # fmt: skip
    local.stop("forecast")
    with contextlib.suppress(redis.exceptions.RedisError):
        SpendingStore.from_url("redis://127.0.0.1:6379/0", PREFIX).clear()


def steps_of(loop, settings=None):
    return real_steps(settings or loop["settings"], Deployer(loop["config"]), sample=SAMPLES)


def champion(loop, model):
    mv = registry.get_alias(loop["client"], model)
    return None if mv is None else str(mv.version)


def answer(loop):
    r = httpx.post(f"http://127.0.0.1:{loop['port']}/predict/spending", json=BODY, timeout=30)
    assert r.status_code == 200, r.text
    return r.headers[TAG_HEADER], r.json()["model_version"]


def test_retrain_promotes_builds_swaps_and_records(loop):
    events = []
    old = loop["local"].served("forecast")
    run = jobs.retrain("spending", loop["store"], steps_of(loop), bundles=["forecast"],
                       notify=events.append)  # fmt: skip
    assert run.outcome == "success", run.reason
    recorded = loop["store"].recent(1, job="retrain-spending")[0]
    assert recorded.versions_before == {"spending": "1"}
    assert recorded.versions_after == {"spending": "2"}
    new_tag = recorded.bento_tags["forecast"]
    assert new_tag.startswith("finbento-forecast:sp2-") and new_tag != old.tag
    assert "local:" in recorded.reason and "command" in recorded.reason
    assert loop["local"].served("forecast").tag == new_tag
    assert answer(loop) == (new_tag, "2")  # the public port answers from the new Bento
    assert loop["hook"].read_text().split() == [new_tag]  # the ops hook got the tag
    assert [(e.kind, e.model) for e in events] == [("promotion", "spending")]


def test_gate_refusal_is_recorded_and_builds_nothing(loop):
    s = loop["settings"]
    credit_risk.train(s, sample=SAMPLES["credit-risk"])  # a champion to beat
    before = champion(loop, "credit-risk")
    strict = s.model_copy(update={"credit_risk_gate": GatePolicy(floors={"roc_auc": 0.99})})
    n_bentos = len(bentos_of("finbento-risk")) + len(bentos_of("finbento"))
    events = []
    run = jobs.retrain("credit-risk", loop["store"], steps_of(loop, strict),
                       notify=events.append)  # fmt: skip
    assert run.outcome == "rejected"
    assert "FAIL: roc_auc" in run.reason and "(floor 0.990)" in run.reason
    assert champion(loop, "credit-risk") == before
    assert run.versions_before == run.versions_after == {"credit-risk": before}
    assert len(bentos_of("finbento-risk")) + len(bentos_of("finbento")) == n_bentos
    assert [(e.kind, e.severity) for e in events] == [("rejection", "warning")]


def bentos_of(name):
    import bentoml

    return [b for b in bentoml.list() if b.tag.name == name]


def test_a_training_that_raises_half_way_changes_nothing(loop, monkeypatch):
    served, before = loop["local"].served("forecast"), champion(loop, "spending")

    def broken(*args, **kwargs):
        raise RuntimeError("backtest scoring broke")

    monkeypatch.setattr(spending, "metrics_of", broken)  # after the backtest, before MLflow
    events = []
    run = jobs.retrain("spending", loop["store"], steps_of(loop), bundles=["forecast"],
                       notify=events.append)  # fmt: skip
    assert run.outcome == "failed" and "RuntimeError: backtest scoring broke" in run.reason
    assert loop["store"].recent(1)[0].outcome == "failed"
    assert champion(loop, "spending") == before
    assert loop["local"].served("forecast") == served
    assert answer(loop) == (served.tag, before)
    assert [(e.kind, e.severity) for e in events] == [("failure", "critical")]


def test_a_failing_build_after_promotion_rolls_back_and_leaves_serving(loop, monkeypatch):
    served, before = loop["local"].served("forecast"), champion(loop, "spending")

    def broken_build(*args, **kwargs):
        raise subprocess.CalledProcessError(1, ["bentoml", "build"], stderr="disk full")

    monkeypatch.setattr(bentos, "build", broken_build)
    run = jobs.retrain("spending", loop["store"], steps_of(loop), bundles=["forecast"])
    assert run.outcome == "failed"
    assert "CalledProcessError" in run.reason and "disk full" in run.reason
    assert f"champion rolled back to version {before}" in run.reason
    assert champion(loop, "spending") == before  # the promoted version did not stay champion
    assert run.versions_before == run.versions_after == {"spending": before}
    assert loop["local"].served("forecast") == served
    assert answer(loop) == (served.tag, before)


# --- PostgreSQL ------------------------------------------------------------------------------


@pytest.fixture
def pg_schema():
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(f"{PG}/test", connect_timeout=3, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable at {PG}/test: {exc}")
    schema = f"finbento_sched_{uuid.uuid4().hex[:8]}"
    admin.execute(f"CREATE SCHEMA {schema}")
    yield f"{PG}/test", schema
    admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    admin.close()


def test_job_store_runs_and_locks_on_postgresql(pg_schema, tmp_path):
    from apscheduler.schedulers.background import BackgroundScheduler

    url, schema = pg_schema
    config = SchedulerConfig(state_dir=tmp_path, database_url=url, db_schema=schema,
                             retrain_cron={"credit-risk": "0 3 * * 1"}, metrics_port=0)  # fmt: skip
    scheduler = daemon.build_scheduler(config, scheduler_class=BackgroundScheduler)
    scheduler.start(paused=True)
    scheduler.shutdown(wait=False)
    status = daemon.status(config)
    assert {j["id"] for j in status["jobs"]} == {"drift-check", "retrain-credit-risk"}

    one, two = RunStore(url, schema), RunStore(url, schema)  # two daemons, one database
    assert one.acquire("retrain-credit-risk", "daemon-1", 60)
    assert not two.acquire("retrain-credit-risk", "daemon-2", 60)
    with record_run(two, "retrain-credit-risk", model="credit-risk") as run:
        assert run.skipped
    one.release("retrain-credit-risk", "daemon-1")
    assert one.acquire("retrain-expiring", "daemon-1", -1)
    assert two.acquire("retrain-expiring", "daemon-2", 60)  # expired: taken over
    with record_run(one, "retrain-credit-risk", model="credit-risk") as run:
        run.versions_before, run.versions_after = {"credit-risk": "1"}, {"credit-risk": "2"}
        run.bento_tags = {"risk": "finbento-risk:an1-cr2-fr1-x"}
    got = two.recent(2)
    assert [r.outcome for r in got] == ["success", "skipped"]
    assert got[0].versions_after == {"credit-risk": "2"} and got[0].bento_tags["risk"]
    with one.engine.connect() as conn:  # everything is in the throw-away schema
        tables = {r[0] for r in conn.exec_driver_sql(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schema,))}  # fmt: skip
    assert tables == {"finbento_apscheduler_jobs", "finbento_job_runs", "finbento_job_locks"}
    assert json.dumps(status["locks"], default=str)

    racers = [RunStore(url, schema) for _ in range(4)]  # four daemons race for each lock

    def take(i, job, barrier, wins):
        barrier.wait()
        if racers[i].acquire(job, f"daemon-{i}", 60):
            wins.append(i)

    for round_ in range(5):
        barrier, wins = threading.Barrier(4), []
        threads = [threading.Thread(target=take, args=(i, f"race-{round_}", barrier, wins))
                   for i in range(4)]  # fmt: skip
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert len(wins) == 1
    for store in (one, two, daemon.current().store, *racers):
        store.engine.dispose()  # no connection left for DROP SCHEMA to wait on
