"""Faults under load: a served risk Bento answers a steady stream of requests while Redis stops and
starts, MLflow dies during a retrain and a model-service worker is killed; a corrupted model file
is refused by the build and, damaged after the build, by serving. Each test prints what it
measured (``pytest -s``) and asserts what was lost: the target is nothing."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from finbento import bentos, model_integrity
from finbento.feature_store import TransactionStore
from finbento.serving import free_port, start_bento_server, stop_bento_server
from finbento.settings import Settings
from monitoring.prediction_log import STREAM
from tests.conftest import applicant_dict, sample_policy
from tests.sinks import HttpSink, dead_url
from trainers import credit_risk

pytestmark = pytest.mark.integration
RISK = ("credit-risk", "fraud", "anomaly")
LIMIT_BAL = 10_000.0  # credit-risk requests carry limit_bal = LIMIT_BAL + request number


# --- helpers -------------------------------------------------------------------------------------


class RedisServer:
    """A private ``redis-server`` on a free port that a test may kill and start again.

    Append-only file with ``fsync`` on every write: a ``kill -9`` then loses only what Redis never
    acknowledged, so a record missing afterwards was lost by finbento, not by Redis.
    """

    def __init__(self, binary: str, folder: Path) -> None:
        self.binary, self.folder, self.port = binary, folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client = redis.Redis(port=self.port, socket_timeout=2)
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        """Start it and wait until it answers PING; the seconds that took."""
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(self._pings, 10, "redis-server did not start")
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def _pings(self) -> bool:
        with contextlib.suppress(redis.exceptions.RedisError):
            return bool(self.client.ping())
        return False


def wait_for(check: Callable[[], object], timeout_s: float, why: str, every_s: float = 0.05):
    """Poll ``check`` until it returns something true; that value. AssertionError on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(every_s)
    raise AssertionError(f"{why} within {timeout_s} s")


@dataclass
class Answer:
    """One request of a :class:`Load`: when it was sent (monotonic s), how long it took (s)."""

    number: int
    sent: float
    took: float
    path: str
    status: int  # -1: no HTTP answer at all
    body: dict

    @property
    def done(self) -> float:
        return self.sent + self.took


@dataclass
class Load:
    """A steady stream of requests from ``threads`` threads until the ``with`` block ends.

    ``make(i)`` gives the path and JSON body of the i-th request (numbers are unique).
    """

    url: str
    make: Callable[[int], tuple[str, dict]]
    threads: int = 4
    answers: list[Answer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._numbers = itertools.count()
        self._workers = [threading.Thread(target=self._run, daemon=True)
                         for _ in range(self.threads)]  # fmt: skip

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                number = next(self._numbers)
                path, body = self.make(number)
                sent = time.monotonic()
                try:
                    r = client.post(path, json=body)
                    status, data = r.status_code, _json(r)
                except httpx.HTTPError as exc:
                    status, data = -1, {"error": repr(exc)}
                took = time.monotonic() - sent
                self.answers.append(Answer(number, sent, took, path, status, data))

    def __enter__(self) -> Load:
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(60)

    def of(self, path: str) -> list[Answer]:
        return [a for a in self.answers if a.path == path]

    def failed(self, allowed: Callable[[Answer], bool] = lambda a: False) -> list[Answer]:
        """Answers other than 200 that ``allowed`` does not excuse."""
        return [a for a in self.answers if a.status != 200 and not allowed(a)]


def _json(r: httpx.Response) -> dict:
    try:
        body = r.json()
    except ValueError:
        return {"text": r.text[:200]}
    return body if isinstance(body, dict) else {"json": body}


def transaction(txid: str, customer: int) -> dict:
    return {"transaction_id": txid, "tx_datetime": "2018-08-20T10:15:00",
            "customer_id": f"fault-c{customer}", "terminal_id": "fault-t1",
            "tx_amount": 20.0 + customer}  # fmt: skip


def risk_traffic(run: str, ingest: bool) -> Callable[[int], tuple[str, dict]]:
    """Requests alternating fraud (transaction id ``<run>-<i>``) and credit-risk (unique input)."""

    def make(i: int) -> tuple[str, dict]:
        if i % 2:
            return "/predict/credit-risk", {"applicant": applicant_dict(limit_bal=LIMIT_BAL + i)}
        return "/predict/fraud", {"transaction": transaction(f"{run}-{i}", i % 20),
                                  "ingest": ingest}  # fmt: skip

    return make


def service_process(server: subprocess.Popen, name: str) -> psutil.Process | None:
    """The worker process of service ``name`` under a ``bentoml serve`` process."""
    for proc in psutil.Process(server.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            args = proc.cmdline()
            if "--service-name" in args and args[args.index("--service-name") + 1] == name:
                return proc
    return None


def metric_total(url: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` on ``url``/metrics whose labels include ``labels``."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url + "/metrics", timeout=10).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


def logged(r: redis.Redis, prefix: str, model: str) -> list[dict]:
    """Every record of ``model``'s prediction-log stream."""
    return [json.loads(fields[b"r"]) for _, fields in r.xrange(f"{prefix}:{STREAM}:{model}")]


@contextlib.contextmanager
def kept_mlflow_state() -> Iterator[None]:
    """Restore MLflow's process-wide tracking and registry URIs and active experiment afterwards:
    later tests export models through ``models:/`` URIs that read them."""
    import mlflow
    from mlflow.tracking import fluent

    uris = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    experiment, env = fluent._active_experiment_id, os.environ.get("MLFLOW_EXPERIMENT_ID")
    try:
        yield
    finally:
        mlflow.set_tracking_uri(uris[0])
        mlflow.set_registry_uri(uris[1])
        fluent._active_experiment_id = experiment
        if env is None:
            os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
        else:
            os.environ["MLFLOW_EXPERIMENT_ID"] = env


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not installed: cannot run a Redis this test may stop")
    server = RedisServer(binary, tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    with contextlib.suppress(AssertionError):
        server.kill()


@pytest.fixture(scope="module")
def served(trained, redis_server, tmp_path_factory):
    """The risk Bento of the session's models, its Redis the private one, its state its own."""
    tags = {m: trained.tags[m] for m in RISK}
    versions = {m: trained.versions[m] for m in RISK}
    tag = bentos.build("risk", tags, versions)
    state = tmp_path_factory.mktemp("served-state")
    prefix = f"fault-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {"FINBENTO_REDIS_URL": redis_server.url, "FINBENTO_REDIS_PREFIX": prefix,
           "FINBENTO_STATE_DIR": str(state)}  # fmt: skip
    proc = start_bento_server(tag, port, env, log_file=state / "serve.log")
    yield {"url": f"http://127.0.0.1:{port}", "proc": proc, "tag": tag, "prefix": prefix,
           "predlog": state / "predlog", "tags": tags, "versions": versions,
           "state": state}  # fmt: skip
    stop_bento_server(proc)


# --- 1. Redis stops and starts again -------------------------------------------------------------


def test_redis_stop_and_start_under_load_loses_nothing(served, redis_server):
    run = f"redis-{uuid.uuid4().hex[:6]}"
    with Load(served["url"], risk_traffic(run, ingest=True)) as load:
        time.sleep(3)
        down = time.monotonic()
        redis_server.kill()
        time.sleep(4)
        restart_s = redis_server.start()
        up = time.monotonic()
        first_ok = wait_for(
            lambda: next((a for a in load.of("/predict/fraud")
                          if a.sent >= up and a.status == 200 and not a.body["degraded"]), None),
            15, "no answer stopped being degraded after Redis restarted",
        )  # fmt: skip
        time.sleep(2)
    # store the transactions that a caller sends while Redis is down: 503 + Retry-After (retried)
    late = [transaction(f"{run}-late-{i}", i) for i in range(5)]
    answer = httpx.post(served["url"] + "/transactions", json={"transactions": late}, timeout=30)
    assert answer.status_code == 200 and answer.json()["ingested"] == 5, answer.text

    fraud = [a for a in load.of("/predict/fraud") if a.status == 200]
    while_down = [a for a in fraud if a.sent >= down and a.done <= up - restart_s]
    before = [a for a in fraud if a.done <= down]
    after = [a for a in fraud if a.sent >= first_ok.sent]
    assert load.failed() == [], load.failed()[:3]  # no 5xx, no connection error, ever
    assert while_down and all(a.body["degraded"] for a in while_down)
    assert before and not any(a.body["degraded"] for a in before)
    assert after and not any(a.body["degraded"] for a in after)
    recovery_s = first_ok.sent - up
    assert recovery_s < 5

    # the feature store: history from before the kill (Redis' own AOF) and after the restart
    store = TransactionStore.from_url(redis_server.url, served["prefix"])
    stored = lambda answers: {a.body["transaction_id"] for a in answers}  # noqa: E731
    assert store.known(stored(before)) == stored(before)
    assert store.known(stored(after)) == stored(after)
    assert store.known([t["transaction_id"] for t in late]) == {t["transaction_id"] for t in late}
    # scored while Redis was down: spooled locally, then replayed into the store after recovery
    wait_for(lambda: store.known(stored(fraud)) == stored(fraud), 30,
             "transactions scored while Redis was down did not reach the feature store",
             every_s=0.5)  # fmt: skip
    spool_s = time.monotonic() - up
    wait_for(lambda: not list((served["state"] / "feature-spool").glob("*.jsonl*")), 10,
             "feature-spool files were not deleted after the replay", every_s=0.2)  # fmt: skip
    not_ingested = stored(while_down) - store.known(stored(while_down))
    spooled = metric_total(served["url"], "ml_feature_store_spooled_total", result="spooled")
    replayed = metric_total(served["url"], "ml_feature_store_spooled_total", result="replayed")
    spool_dropped = metric_total(served["url"], "ml_feature_store_spooled_total", result="dropped")

    # the prediction log: every answered request has its record in Redis once the files replayed
    wait_for(lambda: not list(served["predlog"].glob("*.jsonl*")), 60,
             "prediction-log fallback files were not replayed", every_s=0.5)  # fmt: skip
    time.sleep(1)  # the drain thread's last batch
    r = redis_server.client
    logged_fraud = {rec["prediction"]["transaction_id"] for rec in logged(r, served["prefix"],
                                                                          "fraud")}  # fmt: skip
    logged_credit = {rec["inputs"]["limit_bal"] for rec in logged(r, served["prefix"],
                                                                  "credit-risk")}  # fmt: skip
    credit = [a for a in load.of("/predict/credit-risk") if a.status == 200]
    lost = len(stored(fraud) - logged_fraud) + len(
        {LIMIT_BAL + a.number for a in credit} - logged_credit
    )
    dropped = metric_total(served["url"], "ml_prediction_log_dropped_total")
    fallback = metric_total(served["url"], "ml_prediction_log_fallback_total")
    print(f"\n[redis] sent {len(load.answers)}, failed {len(load.failed())}, fraud answers "
          f"{len(fraud)} ({len(while_down)} while down, all degraded); Redis down "
          f"{up - down:.1f} s, non-degraded again {recovery_s:.2f} s after restart; "
          f"prediction-log records lost {lost} (dropped metric {dropped:.0f}, {fallback:.0f} "
          f"went through the fallback file and were replayed); transactions "
          f"scored while down and not in the feature store: {len(not_ingested)} of "
          f"{len(while_down)} (answered degraded; spooled {spooled:.0f}, replayed "
          f"{replayed:.0f}, dropped {spool_dropped:.0f}; all {len(fraud)} scored transactions "
          f"in the store {spool_s:.1f} s after the restart; /transactions: 503, "
          f"retried)")  # fmt: skip
    assert lost == 0 and dropped == 0 and fallback > 0
    assert not not_ingested and spooled >= len(while_down) and replayed >= len(while_down)
    assert spool_dropped == 0


# --- 3. a model-service worker is killed ---------------------------------------------------------


def test_killed_model_service_worker_is_restarted_and_no_request_fails(served):
    victim = service_process(served["proc"], "fraud")
    assert victim is not None, "no fraud model-service worker under bentoml serve"
    retries_before = metric_total(served["url"], "ml_dependency_retries_total", service="fraud")
    with Load(served["url"], risk_traffic(f"kill-{uuid.uuid4().hex[:6]}", ingest=False),
              threads=8) as load:  # fmt: skip
        time.sleep(2)
        killed = time.monotonic()
        victim.kill()
        respawned = wait_for(
            lambda: (p := service_process(served["proc"], "fraud")) and p.pid != victim.pid and p,
            30, "BentoML did not start a new fraud worker",
        )  # fmt: skip
        respawn_s = time.monotonic() - killed
        first_ok = wait_for(
            lambda: min((a.done for a in load.of("/predict/fraud")
                         if a.sent >= killed and a.status == 200), default=None),
            30, "no fraud answer after the kill",
        )  # fmt: skip
        time.sleep(2)
    fraud_after = [a for a in load.of("/predict/fraud") if a.sent >= killed - 0.5]
    retries = metric_total(served["url"], "ml_dependency_retries_total", service="fraud")
    failed = load.failed()
    print(f"\n[kill] sent {len(load.answers)} ({len(fraud_after)} fraud from the kill on), "
          f"failed {len(failed)}; new fraud worker after {respawn_s:.2f} s, fraud answered "
          f"again {first_ok - killed:.2f} s after the kill, longest request "
          f"{max(a.took for a in fraud_after):.2f} s; dependency retries "
          f"{retries - retries_before:.0f}")  # fmt: skip
    assert not psutil.pid_exists(victim.pid) or victim.status() == psutil.STATUS_ZOMBIE
    assert respawned.pid != victim.pid
    assert failed == [], [(a.status, a.body) for a in failed[:3]]


# --- 2. MLflow unreachable during a retrain ------------------------------------------------------


@pytest.fixture
def mlflow_server(tmp_path) -> Iterator[tuple[subprocess.Popen, str]]:
    """A real ``mlflow server`` (sqlite, local artifacts) that a test may kill."""
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
         "--artifacts-destination", str(tmp_path / "mlartifacts")],
        stdout=open(tmp_path / "mlflow.log", "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(url + "/health", timeout=1).status_code == 200
        return False

    try:
        wait_for(healthy, 120, "mlflow server did not start", every_s=0.3)
        yield proc, url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture
def quick_mlflow_failures(monkeypatch):
    """MLflow's client retries a refused connection 7 times with back-off (~4 min a call, measured
    247 s): fail at once here. MLflow's process-wide state is restored afterwards."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    with kept_mlflow_state():
        yield


def retrain_through_the_daemon(settings: Settings, folder: Path, served: dict) -> dict:
    """Run ``retrain-credit-risk`` in a started APScheduler daemon while the Bento is under load.

    Returns:
        the APScheduler event, the recorded run, the webhook notifications, the failed-run
        counter's increase, the load and the BentoML models/Bentos before and after.
    """
    import bentoml
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED
    from apscheduler.schedulers.background import BackgroundScheduler
    from prometheus_client import REGISTRY

    from monitoring.notify import Notifier, NotifyConfig
    from scheduler import daemon
    from scheduler.config import SchedulerConfig, retrain_job_id
    from scheduler.deploy import Deployer
    from scheduler.steps import real_steps

    job = retrain_job_id("credit-risk")
    config = SchedulerConfig(state_dir=folder, retrain_cron={"credit-risk": "0 3 * * 1"},
                             bundles=["risk"], metrics_port=0)  # fmt: skip
    steps = real_steps(settings, Deployer(config), sample={"credit-risk": 2500})
    failed = {"job": job, "outcome": "failed"}
    counted = REGISTRY.get_sample_value("ml_job_runs_total", failed) or 0.0
    store = lambda: (len(bentoml.models.list("credit-risk")), len(bentoml.list()))  # noqa: E731
    before = store()
    events: list = []
    with HttpSink(status=200) as sink:
        notify = daemon.notifier_adapter(
            Notifier.from_config(NotifyConfig(webhook_url=sink.url + "/alerts", retries=0))
        )
        scheduler = daemon.build_scheduler(config, settings=settings, steps=steps, notify=notify,
                                           scheduler_class=BackgroundScheduler)  # fmt: skip
        scheduler.add_listener(events.append, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        with Load(served["url"], risk_traffic(f"mlflow-{uuid.uuid4().hex[:6]}", False)) as load:
            scheduler.start()
            scheduler.modify_job(job, next_run_time=datetime.now(UTC))
            event = wait_for(lambda: next((e for e in events if e.job_id == job), None), 180,
                             "the retrain job did not finish", every_s=0.2)  # fmt: skip
        scheduler.shutdown()
        alerts = [r.json() for r in sink.requests]
    return {"event": event, "run": daemon.current().store.recent(1, job=job)[0],
            "alerts": alerts, "counted": (REGISTRY.get_sample_value("ml_job_runs_total", failed)
                                          or 0.0) - counted,
            "load": load, "store": (before, store())}  # fmt: skip


def assert_failed_cleanly(out: dict, served: dict, label: str) -> None:
    """The job returned (no exception), recorded and alerted a failure; serving never changed."""
    from apscheduler.events import EVENT_JOB_EXECUTED

    event, run, load = out["event"], out["run"], out["load"]
    versions = {(a.path, a.body.get("model_version")) for a in load.answers if a.status == 200}
    print(f"\n[mlflow {label}] job outcome {event.retval!r}, exception {event.exception!r}; "
          f"failed runs counted +{out['counted']:.0f}; alerts {len(out['alerts'])}; served "
          f"{len(load.answers)} requests during the job, failed {len(load.failed())}, "
          f"versions {sorted(versions)}; reason: {run.reason[:160]!r}")  # fmt: skip
    assert event.code == EVENT_JOB_EXECUTED and event.exception is None
    assert event.retval == "failed" and run.outcome == "failed"
    assert "MlflowException" in run.reason and run.bento_tags == {}
    assert out["counted"] == 1
    assert [(a["kind"], a["severity"], a["model"]) for a in out["alerts"]] == [
        ("failure", "critical", "credit-risk")
    ]
    assert "MlflowException" in out["alerts"][0]["details"]["reason"]
    before, after = out["store"]
    assert after == before  # no model imported, no Bento built
    assert load.answers and load.failed() == []
    assert versions == {("/predict/credit-risk", served["versions"]["credit-risk"]),
                        ("/predict/fraud", served["versions"]["fraud"])}  # fmt: skip
    assert served["proc"].poll() is None


def test_mlflow_dying_mid_retrain_fails_the_job_cleanly(
    served, mlflow_server, quick_mlflow_failures, tmp_path, monkeypatch
):
    proc, url = mlflow_server
    real_fit, crashed = credit_risk.fit, []

    def crash_then_fit(*args, **kwargs):  # MLflow dies after the champion look-up, mid-training
        os.killpg(proc.pid, signal.SIGKILL)
        crashed.append(time.monotonic())
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(credit_risk, "fit", crash_then_fit)
    s = Settings(state_dir=tmp_path / "s", mlflow_tracking_uri=url,
                 credit_risk_gate=sample_policy())  # fmt: skip
    out = retrain_through_the_daemon(s, tmp_path / "scheduler", served)
    assert crashed, "the retrain never reached training"
    assert_failed_cleanly(out, served, "killed mid-run")
    assert out["run"].versions_before == {"credit-risk": None}  # none in this fresh registry


def test_mlflow_unreachable_from_the_start_fails_the_job_cleanly(
    served, quick_mlflow_failures, tmp_path
):
    url = dead_url().rstrip("/")
    s = Settings(state_dir=tmp_path / "s", mlflow_tracking_uri=url,
                 credit_risk_gate=sample_policy())  # fmt: skip
    out = retrain_through_the_daemon(s, tmp_path / "scheduler", served)
    assert_failed_cleanly(out, served, "unreachable")
    assert url.rsplit(":", 1)[1] in out["run"].reason
    assert out["run"].versions_before == {}  # the champion look-up failed: not read as "none"


# --- 4. a corrupted model file -------------------------------------------------------------------


@pytest.fixture
def own_credit_risk(trained):
    """A copy of the session's imported credit-risk model under a tag of its own (files, labels
    and digests as imported), so a test may damage it and the shared one stays intact."""
    import bentoml

    source = trained.models["credit-risk"]
    tag = f"{source.tag.name}:integrity-{uuid.uuid4().hex[:8]}"
    with bentoml.models.create(tag, labels=source.info.labels,
                               metadata=source.info.metadata) as copy:  # fmt: skip
        shutil.copytree(source.path, copy.path, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("model.yaml"))  # fmt: skip
    yield bentoml.models.get(tag), trained.versions["credit-risk"]
    for bento in bentoml.list():  # so no later test takes a Bento of it for the latest one
        if tag in {str(m.tag) for svc in bento.info.services for m in svc.models}:
            bentoml.delete(bento.tag)
    bentoml.models.delete(tag)


def test_a_corrupted_model_file_is_refused_by_the_build_and_by_serving(
    own_credit_risk, trained, tmp_path
):
    import bentoml

    model_integrity.verify_models(trained.tags.values())  # every import recorded its digests
    model, version = own_credit_risk
    manifest = model.info.metadata[model_integrity.METADATA_KEY]
    assert manifest == model_integrity.digest_files(Path(model.path)) and "model.ubj" in manifest
    tags = {**{m: trained.tags[m] for m in RISK}, "credit-risk": str(model.tag)}
    versions = {m: trained.versions[m] for m in RISK}
    path = Path(model.path) / "model.ubj"
    original = path.read_bytes()
    corrupt = bytearray(original)
    corrupt[len(corrupt) // 2] ^= 0x01  # one bit of one byte
    n_bentos = len(bentoml.list())
    path.write_bytes(corrupt)
    try:
        with pytest.raises(model_integrity.ModelIntegrityError) as refused:
            bentos.build("risk", tags, versions)
    finally:
        path.write_bytes(original)
    err = refused.value
    assert (err.tag, err.file, err.expected) == (str(model.tag), "model.ubj", manifest["model.ubj"])
    assert err.actual == hashlib.sha256(corrupt).hexdigest()
    assert str(model.tag) in str(err) and err.expected in str(err) and err.actual in str(err)
    assert len(bentoml.list()) == n_bentos  # nothing was built

    tag = bentos.build("risk", tags, versions)  # the same model, untouched: builds
    bento = bentoml.get(tag)
    assert bento.info.labels["credit-risk"] == version
    # BentoML 1.4 keeps no copy of the models in a built Bento: it names their tags, and serving
    # (or an export / image build) reads them from the store, where a later change is not seen
    assert str(model.tag) in {str(m.tag) for svc in bento.info.services for m in svc.models}
    assert not (Path(bento.path) / "models").exists()
    # so the same damage after the build stops serving at start (services verify what they load)
    log = tmp_path / "serve.log"
    path.write_bytes(corrupt)
    started = time.perf_counter()
    try:
        with pytest.raises(RuntimeError, match=r"exited|not ready"):
            # intact, this Bento is ready in ~8 s
            start_bento_server(tag, free_port(), {"FINBENTO_STATE_DIR": str(log.parent)},
                               timeout_s=25, log_file=log)  # fmt: skip
    finally:
        path.write_bytes(original)
    refused_in = time.perf_counter() - started
    served_log = log.read_text(errors="replace")
    assert "ModelIntegrityError" in served_log and f"file model.ubj has sha256 {err.actual}" in (
        served_log
    ), served_log[-3000:]
    started = time.perf_counter()
    model_integrity.verify_models([*trained.tags.values(), str(model.tag)])
    print(f"\n[integrity] one flipped bit in {path.name} refused: {err}; untouched: built {tag}; "
          f"serving it damaged refused in {refused_in:.1f} s; "
          f"verifying all {len(trained.tags)} session models took "
          f"{time.perf_counter() - started:.2f} s")  # fmt: skip


def test_integrity_refuses_added_removed_and_unrecorded_files(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "weights.bin").write_bytes(b"\x00\x01")
    (tmp_path / "sub" / "config.json").write_text("{}")
    (tmp_path / "model.yaml").write_text("not covered")
    manifest = model_integrity.digest_files(tmp_path)
    assert sorted(manifest) == ["sub/config.json", "weights.bin"]
    model_integrity.verify_folder("m:1", tmp_path, manifest)  # untouched: passes
    (tmp_path / "model.yaml").write_text("changed: still not covered")
    model_integrity.verify_folder("m:1", tmp_path, manifest)

    (tmp_path / "extra.pkl").write_bytes(b"code")
    with pytest.raises(model_integrity.ModelIntegrityError, match=r"unexpected file extra\.pkl"):
        model_integrity.verify_folder("m:1", tmp_path, manifest)
    (tmp_path / "extra.pkl").unlink()
    (tmp_path / "sub" / "config.json").unlink()
    with pytest.raises(model_integrity.ModelIntegrityError, match=r"sub/config\.json is missing"):
        model_integrity.verify_folder("m:1", tmp_path, manifest)
    with pytest.raises(model_integrity.ModelIntegrityError, match="no file digests") as err:
        model_integrity.verify_folder("m:1", tmp_path, None)
    assert err.value.file is None and "import it again" in str(err.value)


def test_dependency_call_retries_connection_errors_only(monkeypatch):
    import asyncio

    import aiohttp
    from bentoml.exceptions import ServiceUnavailable

    from services import dependency

    monkeypatch.setattr(dependency, "BACKOFF_S", (0.001, 0.002))
    calls: list[str] = []

    def failing(errors: list[BaseException]):
        async def method(x: int) -> int:
            calls.append("call")
            if errors:
                raise errors.pop(0)
            return x * 2

        return method

    flaky = failing([aiohttp.ServerDisconnectedError(), ServiceUnavailable("busy")])
    assert asyncio.run(dependency.call("fraud", flaky, 21)) == 42 and len(calls) == 3
    for error in (TimeoutError(), ValueError("bad input")):  # not retried
        calls.clear()
        with pytest.raises(type(error)):
            asyncio.run(dependency.call("fraud", failing([error]), 1))
        assert len(calls) == 1
    monkeypatch.setattr(dependency, "DEADLINE_S", 0.05)
    calls.clear()
    dead = failing([aiohttp.ClientConnectionError()] * 10_000)
    with pytest.raises(aiohttp.ClientConnectionError):  # gives up once the deadline is spent
        asyncio.run(dependency.call("fraud", dead, 1))
    assert 2 <= len(calls) < 10_000
