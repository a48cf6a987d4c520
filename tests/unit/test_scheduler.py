"""The scheduler daemon, its run records and locks, and its jobs with small fakes as steps."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from prometheus_client import REGISTRY

from finbento.serving import free_port
from scheduler import daemon, jobs
from scheduler.config import SchedulerConfig, cron_trigger, crontab_weekdays
from scheduler.deploy import Deployer, DeployError, post_webhook, run_command_hook
from scheduler.runs import JobRun, RunStore, record_run


@pytest.fixture
def config(tmp_path) -> SchedulerConfig:
    return SchedulerConfig(
        state_dir=tmp_path / "state",
        retrain_cron={"credit-risk": "0 3 * * 1", "fraud": "30 4 * * 2"},
        drift_models=["credit-risk", "fraud"],
        metrics_port=0,
    )


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(f"sqlite:///{tmp_path / 'runs.db'}")


# --- the scheduler ---------------------------------------------------------------------------


def test_scheduler_has_the_job_ids_triggers_and_defaults(config):
    scheduler = daemon.build_scheduler(config)
    assert isinstance(scheduler, BlockingScheduler)
    got = {job.id: job for job in scheduler.get_jobs()}
    assert set(got) == {"drift-check", "retrain-credit-risk", "retrain-fraud"}
    monday = datetime(2026, 11, 30, 12, 0, 1, tzinfo=UTC)  # a Monday, just after noon
    nxt = {i: j.trigger.get_next_fire_time(None, monday) for i, j in got.items()}
    assert nxt["drift-check"] == datetime(2026, 11, 30, 13, tzinfo=UTC)  # hourly
    assert nxt["retrain-credit-risk"] == datetime(2026, 12, 7, 3, tzinfo=UTC)  # next Monday 03:00
    assert nxt["retrain-fraud"] == datetime(2026, 12, 1, 4, 30, tzinfo=UTC)  # Tuesday 04:30
    for job in got.values():
        assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (True, 1, 600)
        assert job.func_ref.startswith("scheduler.daemon:")  # a reference, not a closure
    assert got["retrain-fraud"].args == ("fraud",)
    assert got["retrain-fraud"].executor == "retrain"
    assert scheduler._job_defaults == {"coalesce": True, "max_instances": 1,
                                       "misfire_grace_time": 600}  # fmt: skip


def test_crontab_weekdays_are_the_standard_ones():
    # APScheduler 3 reads weekday numbers with 0 = Monday; crontab has 0/7 = Sunday, 1 = Monday
    assert crontab_weekdays("1") == "mon"
    assert crontab_weekdays("0") == crontab_weekdays("7") == "sun"
    assert crontab_weekdays("1-5") == "mon,tue,wed,thu,fri"
    assert crontab_weekdays("*/2") == "sun,tue,thu,sat"
    assert crontab_weekdays("*") == "*" and crontab_weekdays("mon-fri") == "mon-fri"
    for bad in ("8", "5-2", "mon-5"):
        with pytest.raises(ValueError):
            crontab_weekdays(bad)
    with pytest.raises(ValueError):
        cron_trigger("0 3 * *")
    with pytest.raises(ValueError):
        SchedulerConfig(retrain_cron={"credit-risk": "61 * * * *"})
    with pytest.raises(ValueError):
        SchedulerConfig(drift_models=["no-such-model"])
    with pytest.raises(ValueError, match="unknown bundles"):
        daemon.build_scheduler(SchedulerConfig(serve={"no-such-bundle": 3000}))


def test_jobs_persist_in_the_job_store_and_are_replaced(config):
    first = daemon.build_scheduler(config, scheduler_class=BackgroundScheduler)
    first.start(paused=True)
    first.shutdown(wait=False)
    assert {j["id"] for j in daemon.status(config)["jobs"]} == {
        "drift-check", "retrain-credit-risk", "retrain-fraud"}  # fmt: skip

    changed = config.model_copy(update={"retrain_cron": {"credit-risk": "15 2 * * 0"}})
    second = daemon.build_scheduler(changed, scheduler_class=BackgroundScheduler)
    second.start(paused=True)
    second.shutdown(wait=False)
    jobs_now = {j["id"]: j for j in daemon.status(changed)["jobs"]}
    assert set(jobs_now) == {"drift-check", "retrain-credit-risk"}  # retrain-fraud dropped
    assert "day_of_week='sun'" in jobs_now["retrain-credit-risk"]["trigger"]
    assert "hour='2'" in jobs_now["retrain-credit-risk"]["trigger"]


def test_a_run_missed_while_down_keeps_its_time_unless_the_schedule_changed(config):
    from datetime import timedelta

    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    first = daemon.build_scheduler(config, scheduler_class=BackgroundScheduler)
    first.start(paused=True)
    first.shutdown(wait=False)
    stored = SQLAlchemyJobStore(url=config.url, tablename=config.jobs_table)
    stored.start(BackgroundScheduler(), "default")
    job = stored.lookup_job("retrain-fraud")
    missed = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    job.next_run_time = missed  # as if it was due while the daemon was down
    stored.update_job(job)

    again = {j.id: j for j in daemon.build_scheduler(config).get_jobs()}
    assert again["retrain-fraud"].next_run_time == missed  # runs at start: 5 min < 10 min grace
    kept = stored.lookup_job("retrain-credit-risk").next_run_time
    assert again["retrain-credit-risk"].next_run_time == kept  # unchanged: its next Monday

    changed = config.model_copy(update={"retrain_cron": {"fraud": "0 5 * * 2"}})
    jobs_now = {j.id: j for j in daemon.build_scheduler(changed).get_jobs()}
    assert not hasattr(jobs_now["retrain-fraud"], "next_run_time")  # new schedule: from now


def test_jobs_run_from_the_store_and_critical_drift_triggers_the_retrain(config):
    steps = FakeSteps(promote=True)
    events = []
    levels = {"credit-risk": "critical", "fraud": "ok"}
    scheduler = daemon.build_scheduler(
        config, steps=steps.steps(), notify=events.append, scheduler_class=BackgroundScheduler,
        check_drift=lambda m: SimpleNamespace(level=levels[m], share_drifted=0.6),
    )  # fmt: skip
    scheduler.start()
    try:
        scheduler.modify_job("drift-check", next_run_time=datetime.now(UTC))
        store = daemon.current().store
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not store.recent(5, job="retrain-credit-risk"):
            time.sleep(0.1)
    finally:
        scheduler.shutdown(wait=True)
    drift = store.recent(1, job="drift-check")[0]
    assert drift.outcome == "success"
    assert "credit-risk: critical (60% of features drifted) -> retrain triggered" in drift.reason
    retrain = store.recent(1, job="retrain-credit-risk")[0]
    assert retrain.outcome == "success" and retrain.reason.startswith("drift: ")
    assert steps.trained == ["credit-risk"]
    kinds = [(e.kind, e.severity, e.model) for e in events]
    assert ("drift", "critical", "credit-risk") in kinds
    assert ("promotion", "info", "credit-risk") in kinds
    assert not any(e.model == "fraud" for e in events)  # ok: no notification


def test_drift_job_uses_monitoring_drift_or_records_skipped(config, monkeypatch):
    import types

    empty = types.ModuleType("monitoring.drift")
    monkeypatch.setitem(sys.modules, "monitoring.drift", empty)
    daemon.build_scheduler(config, settings="the settings")
    assert daemon.drift_check_job() == "skipped"
    assert "run_drift_check not found" in daemon.current().store.recent(1)[0].reason

    calls = []
    fake = types.ModuleType("monitoring.drift")
    fake.run_drift_check = lambda settings, model, window: calls.append(
        (settings, model, window)) or SimpleNamespace(level="ok")  # fmt: skip
    monkeypatch.setitem(sys.modules, "monitoring.drift", fake)
    daemon.build_scheduler(config, settings="the settings")
    assert daemon.drift_check_job() == "success"
    assert calls == [("the settings", "credit-risk", 5000), ("the settings", "fraud", 5000)]


def test_daemon_process_serves_metrics_and_stops_on_sigterm(tmp_path):
    import signal

    port = free_port()
    code = (
        "from pathlib import Path; from finbento.settings import Settings; "
        "from scheduler import daemon; from scheduler.config import SchedulerConfig; "
        f"s = Settings(state_dir=Path({str(tmp_path)!r})); "
        f"daemon.run(SchedulerConfig(state_dir=s.state_dir, metrics_port={port}), s)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline, text = time.monotonic() + 30, ""
        while time.monotonic() < deadline and "ml_job_runs" not in text:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
                    text = r.read().decode()
            except OSError:
                time.sleep(0.2)
        assert "ml_job_runs" in text and "ml_job_last_success_timestamp_seconds" in text
        config = SchedulerConfig(state_dir=tmp_path)
        while time.monotonic() < deadline and len(daemon.status(config)["jobs"]) < 9:
            time.sleep(0.2)  # started: its jobs are in the store
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "scheduler: drift-check, retrain-credit-risk" in out and "stopping the scheduler" in out


def test_retrain_now_wires_the_steps_and_records_a_manual_run(config, monkeypatch):
    import scheduler.steps

    fake = FakeSteps()
    monkeypatch.setattr(scheduler.steps, "real_steps", lambda settings, deploy: fake.steps())
    settings = SimpleNamespace(apply_environment=lambda: None)
    run = daemon.retrain_now(config, settings, "fraud")
    assert run.outcome == "success" and run.reason.startswith("manual: version 2 promoted")
    assert fake.trained == ["fraud"] and daemon.current().store.recent(1)[0].id == run.id


def test_metrics_server_exposes_the_job_metrics(config, store):
    store.add(JobRun("retrain-metrics-test", outcome="success"))
    port = daemon.start_metrics_server(config.model_copy(update={"metrics_port": free_port()}))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    assert 'ml_job_runs_total{job="retrain-metrics-test",outcome="success"} 1.0' in text
    assert 'ml_job_last_success_timestamp_seconds{job="retrain-metrics-test"}' in text
    # every scheduled job's series exist at 0 before its first run (increase() sees the first)
    assert 'ml_job_runs_total{job="drift-check",outcome="failed"} 0.0' in text


def test_a_rejected_retrain_counts_as_run_on_time_and_a_failed_one_does_not():
    from scheduler import metrics

    metrics.observe("retrain-on-time-test", "rejected", 1_700_000_000.0)
    metrics.observe("retrain-on-time-test", "failed", 1_800_000_000.0)
    value = metrics.JOB_LAST_SUCCESS.labels(job="retrain-on-time-test")._value.get()
    assert value == 1_700_000_000.0


# --- run records and locks -------------------------------------------------------------------


def test_lock_is_exclusive_between_owners_and_reacquirable_after_expiry(store):
    assert store.acquire("retrain-x", "a", 60)
    assert not store.acquire("retrain-x", "b", 60)
    store.release("retrain-x", "b")  # not b's: no effect
    assert not store.acquire("retrain-x", "b", 60)
    assert store.renew("retrain-x", "a", 60)
    store.release("retrain-x", "a")
    assert store.acquire("retrain-x", "b", 60)

    assert store.acquire("retrain-y", "a", -1)  # already expired
    assert store.acquire("retrain-y", "b", 60)  # taken over
    assert not store.renew("retrain-y", "a", 60)  # a lost it
    assert store.holder("retrain-y")[0] == "b"


def test_lock_race_has_one_winner(tmp_path):
    url = f"sqlite:///{tmp_path / 'race.db'}"
    stores = [RunStore(url) for _ in range(4)]

    def take(i, job, barrier, wins):
        barrier.wait()
        if stores[i].acquire(job, f"owner-{i}", 60):
            wins.append(i)

    for round_ in range(5):
        barrier, wins = threading.Barrier(4), []
        threads = [threading.Thread(target=take, args=(i, f"job-{round_}", barrier, wins))
                   for i in range(4)]  # fmt: skip
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert len(wins) == 1


def test_run_records_round_trip(store):
    with record_run(store, "retrain-credit-risk", model="credit-risk") as run:
        run.versions_before = {"credit-risk": "3"}
        run.versions_after = {"credit-risk": "4"}
        run.bento_tags = {"risk": "finbento-risk:an1-cr4-fr1-abc"}
        run.succeed("version 4 promoted")
    with record_run(store, "drift-check") as run:
        run.reject("nothing")
    got = store.recent(5)
    assert [r.job for r in got] == ["drift-check", "retrain-credit-risk"]  # newest first
    first = got[1]
    assert first.outcome == "success" and first.reason == "version 4 promoted"
    assert first.versions_before == {"credit-risk": "3"}
    assert first.versions_after == {"credit-risk": "4"}
    assert first.bento_tags == {"risk": "finbento-risk:an1-cr4-fr1-abc"}
    assert first.model == "credit-risk" and first.started_at <= first.ended_at
    assert store.recent(5, job="retrain-credit-risk", outcomes=("rejected",)) == []
    assert store.held_locks() == []  # released


def test_a_held_lock_records_skipped_and_an_exception_failed(store):
    labels = {"job": "retrain-z", "outcome": "skipped"}
    before = REGISTRY.get_sample_value("ml_job_runs_total", labels) or 0
    store.acquire("retrain-z", "other-daemon", 60)
    with record_run(store, "retrain-z") as run:
        assert run.skipped
    assert store.recent(1)[0].outcome == "skipped" and "other-daemon" in store.recent(1)[0].reason
    assert REGISTRY.get_sample_value("ml_job_runs_total", labels) == before + 1
    store.release("retrain-z", "other-daemon")
    with pytest.raises(ZeroDivisionError), record_run(store, "retrain-z"):
        1 / 0  # noqa: B018
    last = store.recent(1)[0]
    assert last.outcome == "failed" and last.reason.startswith("ZeroDivisionError")
    assert store.holder("retrain-z") is None


# --- the retrain job with fakes --------------------------------------------------------------


class FakeSteps:
    """Champions in a dict; records what each step was asked to do."""

    def __init__(self, promote=True, fail_at=None, no_champion=()):
        self.champions = {m: "1" for m in ("credit-risk", "fraud", "anomaly", "intent", "ner",
                                           "categorizer", "spending", "advisor",
                                           "recommender")}  # fmt: skip
        for m in no_champion:
            self.champions[m] = None
        self.promote, self.fail_at = promote, fail_at
        self.trained, self.built, self.deployed, self.rolled_back = [], [], [], []

    def _maybe_fail(self, step, arg=None):
        if self.fail_at == step or self.fail_at == (step, arg):
            raise RuntimeError(f"{step} broke")

    def train(self, model):
        self.trained.append(model)
        self._maybe_fail("train")
        version = str(int(self.champions[model] or 0) + 1)
        if self.promote:
            self.previous, self.champions[model] = self.champions[model], version
        reasons = ["PASS roc_auc"] if self.promote else ["FAIL roc_auc 0.70 < 0.76"]
        decision = SimpleNamespace(promote=self.promote, reasons=reasons)
        return SimpleNamespace(version=version, metrics={"roc_auc": 0.79}, decision=decision)

    def import_champion(self, model):
        return f"{model}:v{self.champions[model]}-abcdef12", self.champions[model]

    def build(self, bundle, tags, versions):
        self._maybe_fail("build", bundle)
        tag = f"{bundle}:" + "-".join(f"{m[:2]}{v}" for m, v in sorted(versions.items()))
        self.built.append(tag)
        return tag

    def deploy(self, bundle, tag, models):
        self._maybe_fail("deploy", bundle)
        self.deployed.append(tag)
        return [f"local:{3000 + len(self.deployed)}"]

    def rollback(self, model):
        self.rolled_back.append(model)
        self.champions[model] = self.previous
        return self.previous

    def steps(self):
        return jobs.RetrainSteps(self.train, self.champions.get, self.import_champion,
                                 self.build, self.deploy, self.rollback)  # fmt: skip


def test_promotion_builds_every_bundle_of_the_model_then_deploys_and_records(store):
    fake, events = FakeSteps(), []
    run = jobs.retrain("credit-risk", store, fake.steps(), notify=events.append)
    assert run.outcome == "success"
    assert fake.built == ["all:ad1-an1-ca1-cr2-fr1-in1-ne1-re1-sp1", "risk:an1-cr2-fr1"]
    assert fake.deployed == fake.built  # all builds first, then the deploys
    recorded = store.recent(1)[0]
    assert recorded.versions_before == {"credit-risk": "1"}
    assert recorded.versions_after == {"credit-risk": "2"}
    assert recorded.bento_tags == {"all": fake.built[0], "risk": fake.built[1]}
    assert "version 2 promoted (was 1)" in recorded.reason and "local:3002" in recorded.reason
    assert [(e.kind, e.model) for e in events] == [("promotion", "credit-risk")]
    assert events[0].details["bento.risk"] == fake.built[1]


def test_rejection_builds_nothing(store):
    fake, events = FakeSteps(promote=False), []
    run = jobs.retrain("credit-risk", store, fake.steps(), notify=events.append)
    assert run.outcome == "rejected" and "FAIL roc_auc" in run.reason
    assert fake.built == [] and fake.deployed == []
    assert run.versions_before == run.versions_after == {"credit-risk": "1"}
    assert [(e.kind, e.severity) for e in events] == [("rejection", "warning")]


def test_a_failing_training_records_failed_and_deploys_nothing(store):
    fake, events = FakeSteps(fail_at="train"), []
    run = jobs.retrain("credit-risk", store, fake.steps(), notify=events.append)
    assert run.outcome == "failed" and "RuntimeError: train broke" in run.reason
    assert fake.built == [] and fake.deployed == []
    assert fake.champions["credit-risk"] == "1"
    assert store.recent(1)[0].outcome == "failed"
    assert [(e.kind, e.severity) for e in events] == [("failure", "critical")]


def test_a_failing_build_deploys_nothing_and_rolls_the_champion_back(store):
    fake = FakeSteps(fail_at=("build", "risk"))
    run = jobs.retrain("credit-risk", store, fake.steps(), bundles=["all", "risk"])
    assert run.outcome == "failed" and "build broke" in run.reason
    assert fake.deployed == []  # "all" was built, but nothing is deployed before every build
    assert fake.rolled_back == ["credit-risk"] and fake.champions["credit-risk"] == "1"
    assert run.versions_after == {"credit-risk": "1"}
    assert "champion rolled back to version 1" in run.reason


def test_a_failing_second_deploy_keeps_the_first_and_the_champion(store):
    fake = FakeSteps(fail_at=("deploy", "risk"))
    run = jobs.retrain("credit-risk", store, fake.steps())
    assert run.outcome == "failed" and "already deployed: all:" in run.reason
    assert fake.rolled_back == [] and fake.champions["credit-risk"] == "2"


def test_bundles_without_every_champion_are_not_built(store):
    fake = FakeSteps(no_champion=("intent",))
    run = jobs.retrain("credit-risk", store, fake.steps())
    assert run.outcome == "success" and fake.built == ["risk:an1-cr2-fr1"]
    assert "all not built: no champion of intent" in run.reason


def test_a_retrain_already_running_is_skipped(store):
    fake = FakeSteps()
    store.acquire("retrain-credit-risk", "elsewhere", 60)
    run = jobs.retrain("credit-risk", store, fake.steps())
    assert run.outcome == "skipped" and fake.trained == []


# --- the drift job ---------------------------------------------------------------------------


def test_drift_notifies_warning_and_critical_and_retrains_on_critical(store):
    levels = {"credit-risk": "critical", "fraud": "warning", "anomaly": "ok", "intent": None}
    events, triggered = [], []

    def check(model):
        if model == "ner":
            raise ValueError("no reference")
        level = levels[model]
        return None if level is None else SimpleNamespace(level=level, model_version="3")

    run = jobs.drift_check([*levels, "ner"], store, check, notify=events.append,
                           trigger_retrain=lambda m, why: triggered.append(m))  # fmt: skip
    assert triggered == ["credit-risk"]
    assert [(e.kind, e.severity, e.model) for e in events] == [
        ("drift", "critical", "credit-risk"), ("drift", "warning", "fraud"),
        ("failure", "critical", None)]  # fmt: skip
    assert run.outcome == "failed" and "ner: ValueError: no reference" in run.reason
    assert "anomaly: ok" in run.reason and "intent: nothing to check" in run.reason
    assert run.versions_before["credit-risk"] == "3"

    store.add(JobRun("retrain-credit-risk", model="credit-risk", outcome="rejected"))
    again = jobs.drift_check(["credit-risk"], store, check,
                             trigger_retrain=lambda m, why: triggered.append(m))  # fmt: skip
    assert triggered == ["credit-risk"]  # within the cooldown
    assert again.outcome == "success" and "cooldown" in again.reason


# --- deploy hooks ----------------------------------------------------------------------------


def test_deploy_command_gets_the_tag_in_args_and_env(tmp_path):
    out = tmp_path / "hook.json"
    script = ("import json, os, sys; json.dump({'argv': sys.argv[1:], 'tag': "
              "os.environ['FINBENTO_DEPLOY_TAG'], 'models': os.environ['FINBENTO_DEPLOY_MODELS']}, "
              f"open({str(out)!r}, 'w'))")  # fmt: skip
    command = f'{sys.executable} -c "{script}" {{bundle}} {{tag}}'
    run_command_hook(command, "risk", "finbento-risk:cr2-x", ["credit-risk", "fraud"])
    assert json.loads(out.read_text()) == {
        "argv": ["risk", "finbento-risk:cr2-x"], "tag": "finbento-risk:cr2-x",
        "models": "credit-risk,fraud"}  # fmt: skip
    with pytest.raises(DeployError, match="exited with 3"):
        run_command_hook(f"{sys.executable} -c 'raise SystemExit(3)'", "risk", "t", [])


def test_deploy_webhook_posts_bundle_tag_models():
    got, statuses = [], [204, 500]

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((json.loads(body), self.headers.get("Authorization")))
            self.send_response(statuses.pop(0))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/deploy"
    try:
        post_webhook(url, "all", "finbento:cr2-x", ["credit-risk"], token="s3cret")
        with pytest.raises(DeployError, match="answered 500"):
            post_webhook(url, "all", "finbento:cr2-x", ["credit-risk"])
    finally:
        server.shutdown()
    assert got[0] == ({"bundle": "all", "tag": "finbento:cr2-x", "models": ["credit-risk"]},
                      "Bearer s3cret")  # fmt: skip


def test_deployer_targets_follow_the_config(tmp_path):
    c = SchedulerConfig(state_dir=tmp_path, serve={"risk": 3100}, deploy_command="true")
    assert Deployer(c).targets("risk") == ["local:3100", "command"]
    assert Deployer(c).targets("all") == ["command"]
    assert Deployer(c).__call__("all", "finbento:x", ["credit-risk"]) == ["command"]
    assert Deployer(SchedulerConfig(state_dir=tmp_path)).targets("all") == []


def test_scheduler_package_imports_no_bentoml():
    code = ("import sys, scheduler.daemon, scheduler.jobs, scheduler.runs, scheduler.deploy; "
            "print('bentoml' in sys.modules, 'mlflow' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
