"""The scheduler daemon: an APScheduler 3 ``BlockingScheduler`` in its own process.

Jobs (explicit ids, added with ``replace_existing=True`` at every start, so the persistent job
store always holds the configured schedule):

- ``drift-check`` (``drift_cron``, hourly): :func:`scheduler.jobs.drift_check` over
  ``drift_models``; a critical level adds the one-off job ``retrain-<model>-drift`` (run now).
- ``retrain-<model>`` (``retrain_cron[model]``, weekly): :func:`scheduler.jobs.retrain`.

Job defaults: ``coalesce=True`` (missed runs collapse into one), ``max_instances=1``,
``misfire_grace_time`` = ``misfire_grace_time_s`` (a run later than that is skipped). A job
whose schedule did not change keeps its stored next run time across restarts, so a run missed
while the daemon was down still happens at start if within the grace time. Retrains
run on their own executor (``retrain_threads``, one by default: retrains never compete for
the cores); drift checks on the default one. The job store is SQLAlchemy (sqlite in the state
directory by default, PostgreSQL by setting); it keeps references to the module-level functions
below and their arguments (a model name), never closures: what the jobs need at run time (the
config, the run store, the steps, the drift check and the notifier) is the process's
:class:`Runtime`, set by :func:`build_scheduler`. Retrain locks and run records live in the
same database (:mod:`scheduler.runs`), so two daemons on one database never run the same job.

The daemon serves its own Prometheus metrics (``ml_job_runs_total``,
``ml_job_last_success_timestamp_seconds``) on ``metrics_host:metrics_port``.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from apscheduler.events import EVENT_SCHEDULER_STARTED
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from finbento import log_privacy
from scheduler import jobs, metrics
from scheduler.config import DRIFT_JOB, SchedulerConfig, cron_trigger, retrain_job_id
from scheduler.runs import JobRun, RunStore, create_once

log = logging.getLogger(__name__)

RETRAIN_EXECUTOR = "retrain"
DRIFT_RETRAIN_SUFFIX = "-drift"
_REF = __name__


@dataclass
class Runtime:
    """What the jobs of this process use (set by :func:`build_scheduler`)."""

    config: SchedulerConfig
    store: RunStore
    scheduler: BaseScheduler
    settings: Any = None
    steps: jobs.RetrainSteps | None = None
    check_drift: Callable[[str], Any] | None = None
    notify: jobs.Notify = jobs.log_notify

    def retrain_steps(self) -> jobs.RetrainSteps:
        """The injected steps, or the real ones (built on first use)."""
        if self.steps is None:
            from scheduler.deploy import Deployer
            from scheduler.steps import real_steps

            self.steps = real_steps(self.settings, Deployer(self.config))
        return self.steps

    def drift(self) -> Callable[[str], Any] | None:
        """The injected drift check, or ``monitoring.drift.run_drift_check`` if it exists."""
        if self.check_drift is None:
            try:
                from monitoring.drift import run_drift_check
            except ImportError:
                return None
            settings, window = self.settings, self.config.drift_window
            self.check_drift = lambda model: run_drift_check(settings, model, window)
        return self.check_drift

    def trigger_retrain(self, model: str, reason: str) -> None:
        """Run ``model``'s retrain now, as the one-off job ``retrain-<model>-drift``."""
        log.info("%s: %s: retrain queued", model, reason)
        self.scheduler.add_job(
            f"{_REF}:retrain_job",
            "date",
            args=[model],
            kwargs={"trigger": "drift"},
            id=retrain_job_id(model) + DRIFT_RETRAIN_SUFFIX,
            name=f"retrain {model} on critical drift",
            executor=RETRAIN_EXECUTOR,
            replace_existing=True,
            **_defaults(self.config),
        )


_runtime: Runtime | None = None


def current() -> Runtime:
    """This process's runtime.

    Raises:
        RuntimeError: :func:`build_scheduler` has not run in this process.
    """
    if _runtime is None:
        raise RuntimeError("no scheduler runtime: call scheduler.daemon.build_scheduler first")
    return _runtime


def retrain_job(model: str, trigger: str = "schedule") -> str:
    """Job function of ``retrain-<model>``: :func:`scheduler.jobs.retrain`; the outcome."""
    rt = current()
    c = rt.config
    run = jobs.retrain(
        model, rt.store, rt.retrain_steps(), bundles=c.bundles, notify=rt.notify,
        trigger=trigger, lock_ttl_s=c.lock_ttl_s, rollback_on_failure=c.rollback_on_failure,
    )  # fmt: skip
    return str(run.outcome)


def drift_check_job() -> str:
    """Job function of ``drift-check``: :func:`scheduler.jobs.drift_check`; the outcome."""
    rt = current()
    c = rt.config
    check = rt.drift()
    if check is None:
        why = "no drift check available (monitoring.drift.run_drift_check not found)"
        return str(rt.store.add(JobRun(DRIFT_JOB, outcome="skipped", reason=why)).outcome)
    run = jobs.drift_check(
        c.drift_models, rt.store, check, notify=rt.notify,
        trigger_retrain=rt.trigger_retrain if c.retrain_on_critical_drift else None,
        cooldown_s=c.drift_retrain_cooldown_s, lock_ttl_s=c.lock_ttl_s,
    )  # fmt: skip
    return str(run.outcome)


def _defaults(config: SchedulerConfig) -> dict[str, Any]:
    return {
        "coalesce": True,
        "max_instances": 1,
        "misfire_grace_time": config.misfire_grace_time_s,
    }


def _kept_run_time(store: SQLAlchemyJobStore, job_id: str, trigger, args: tuple) -> dict:
    """``next_run_time`` of the stored job if its schedule is unchanged, else nothing.

    ``replace_existing`` would otherwise recompute the next run from now at every start, and a
    run missed while the daemon was down would never happen: kept, it runs at start if it is
    late by less than ``misfire_grace_time`` (and is skipped, logged, if later than that).
    """
    try:
        old = store.lookup_job(job_id)
    except Exception:  # a stored job that no longer unpickles: schedule it afresh
        log.warning("stored job %s unreadable: rescheduling it", job_id, exc_info=True)
        return {}
    if old is None or old.next_run_time is None:
        return {}
    if repr(old.trigger) != repr(trigger) or tuple(old.args) != tuple(args):
        return {}
    return {"next_run_time": old.next_run_time}


def engine_of(config: SchedulerConfig) -> sa.Engine:
    """The SQLAlchemy engine of the scheduler's database (its sqlite folder created)."""
    if config.database_url is None:
        config.state_path.mkdir(parents=True, exist_ok=True)
    return sa.create_engine(config.url, pool_pre_ping=True)


def build_scheduler(
    config: SchedulerConfig,
    *,
    settings: Any = None,
    steps: jobs.RetrainSteps | None = None,
    check_drift: Callable[[str], Any] | None = None,
    notify: jobs.Notify | None = None,
    scheduler_class: type[BaseScheduler] = BlockingScheduler,
) -> BlockingScheduler:
    """The configured scheduler, not started; also sets this process's :class:`Runtime`.

    Args:
        config: schedules, database, deploy targets.
        settings: ``finbento.settings.Settings`` for the real steps and drift check.
        steps: retrain steps (default :func:`scheduler.steps.real_steps`).
        check_drift: model -> drift result (default ``monitoring.drift.run_drift_check``).
        notify: receives :class:`scheduler.jobs.JobEvent` (default: a log line).
        scheduler_class: ``BlockingScheduler``; ``BackgroundScheduler`` for tests and status.

    Returns:
        the scheduler with ``drift-check`` and ``retrain-<model>`` added (pending until
        ``start()``, which writes them to the job store, replacing what it held).

    Raises:
        ValueError: an unknown bundle in ``bundles`` or ``serve``.
    """
    global _runtime
    from finbento.bentos import BUNDLES

    unknown = sorted({*(config.bundles or ()), *config.serve} - set(BUNDLES))
    if unknown:
        raise ValueError(f"unknown bundles {unknown}; known: {list(BUNDLES)}")
    engine = engine_of(config)
    store = SQLAlchemyJobStore(engine=engine, tablename=config.jobs_table,
                               tableschema=config.db_schema)  # fmt: skip
    scheduler = scheduler_class(
        jobstores={"default": store},
        executors={
            "default": ThreadPoolExecutor(2),
            RETRAIN_EXECUTOR: ThreadPoolExecutor(config.retrain_threads),
        },
        job_defaults=_defaults(config),
        timezone=config.timezone,
    )
    defaults = _defaults(config)
    stored = SQLAlchemyJobStore(engine=engine, tablename=config.jobs_table,
                                tableschema=config.db_schema)  # fmt: skip
    create_once(lambda: stored.start(scheduler, "default"))  # creates its table
    trigger = cron_trigger(config.drift_cron, config.timezone)
    scheduler.add_job(
        f"{_REF}:drift_check_job",
        trigger,
        id=DRIFT_JOB,
        name="drift check",
        replace_existing=True,
        **defaults,
        **_kept_run_time(stored, DRIFT_JOB, trigger, ()),
    )
    for model, cron in config.retrain_cron.items():
        trigger = cron_trigger(cron, config.timezone)
        scheduler.add_job(
            f"{_REF}:retrain_job",
            trigger,
            args=[model],
            id=retrain_job_id(model),
            name=f"retrain {model}",
            executor=RETRAIN_EXECUTOR,
            replace_existing=True,
            **defaults,
            **_kept_run_time(stored, retrain_job_id(model), trigger, (model,)),
        )
    expected = {DRIFT_JOB, *(retrain_job_id(m) for m in config.retrain_cron)}

    def drop_stale(event) -> None:
        for job in scheduler.get_jobs():
            if job.id not in expected and not job.id.endswith(DRIFT_RETRAIN_SUFFIX):
                log.info("removing job %s: no longer configured", job.id)
                job.remove()

    scheduler.add_listener(drop_stale, EVENT_SCHEDULER_STARTED)
    _runtime = Runtime(config, RunStore(engine=engine, schema=config.db_schema), scheduler,
                       settings, steps, check_drift, notify or jobs.log_notify)  # fmt: skip
    return scheduler  # type: ignore[return-value]


def notifier_adapter(notifier: Any) -> jobs.Notify:
    """A ``notify`` that passes each job event on to a ``monitoring.notify.Notifier``.

    :class:`scheduler.jobs.JobEvent` has the fields of ``monitoring.notify.Event``.
    """
    from monitoring.notify import Event

    def notify(event: jobs.JobEvent) -> None:
        notifier.notify(
            Event(event.kind, event.severity, event.title, event.details, model=event.model)
        )

    return notify


def start_metrics_server(config: SchedulerConfig) -> int | None:
    """Serve Prometheus ``/metrics`` on ``metrics_host:metrics_port``; the port (None if off)."""
    if not config.metrics_port:
        return None
    from prometheus_client import start_http_server

    metrics.declare([DRIFT_JOB, *(retrain_job_id(m) for m in config.retrain_cron)])
    server, _ = start_http_server(config.metrics_port, addr=config.metrics_host)
    port = server.server_port
    log.info("metrics on http://%s:%d/metrics", config.metrics_host, port)
    return port


def run(
    config: SchedulerConfig,
    settings: Any,
    *,
    serve: bool = False,
    check_drift: Callable[[str], Any] | None = None,
    notify: jobs.Notify | None = None,
) -> None:
    """Run the daemon until SIGTERM or Ctrl-C (blocks).

    Args:
        config: the scheduler config.
        settings: finbento settings (``apply_environment`` is called here).
        serve: first serve the latest Bento of every bundle in ``config.serve`` behind its
            front (no-op for those already serving it).
        check_drift: drift check override.
        notify: notifier override.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    log_privacy.install()  # no database or MLflow passwords in the scheduler's log
    started: list[BaseScheduler] = []

    def stop(signum, frame) -> None:
        log.info("signal %d: stopping the scheduler (running jobs finish)", signum)
        if not started or not started[0].running:  # not started yet
            raise SystemExit(0)
        started[0].shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    settings.apply_environment()
    start_metrics_server(config)
    scheduler = build_scheduler(config, settings=settings, check_drift=check_drift,
                                notify=notify)  # fmt: skip
    started.append(scheduler)
    if serve and config.serve:
        from finbento.bentos import latest_bento
        from scheduler.deploy import LocalDeployer

        local = LocalDeployer.from_config(config)
        for bundle, port in config.serve.items():
            tag = latest_bento(bundle)
            if tag is None:
                log.warning("%s: no Bento built yet (finbento build --bundle %s)", bundle, bundle)
                continue
            served = local.ensure(bundle, tag, port)
            log.info("%s: %s on http://%s:%d", bundle, served.tag, config.serve_host, port)

    log.info("scheduler: %s", ", ".join(j.id for j in scheduler.get_jobs()))
    with contextlib.suppress(KeyboardInterrupt):
        scheduler.start()


def retrain_now(
    config: SchedulerConfig, settings: Any, model: str, notify: jobs.Notify | None = None
) -> JobRun:
    """Retrain ``model`` now in this process, as the daemon would (``finbento scheduler retrain``).

    Same lock, gate, build, deploy and record as a scheduled run, with trigger ``manual``.

    Returns:
        the recorded run.
    """
    settings.apply_environment()
    build_scheduler(config, settings=settings, notify=notify)
    rt = current()
    return jobs.retrain(
        model, rt.store, rt.retrain_steps(), bundles=config.bundles, notify=rt.notify,
        trigger="manual", lock_ttl_s=config.lock_ttl_s,
        rollback_on_failure=config.rollback_on_failure,
    )  # fmt: skip


def status(config: SchedulerConfig, runs: int = 10) -> dict[str, Any]:
    """What the daemon's database and state say, without running a job.

    Returns:
        ``jobs`` (id, name, next run as ISO 8601 or None when paused, trigger) from the job
        store, the last ``runs`` run records, the held ``locks`` and the locally ``served``
        bundles.
    """
    from scheduler.deploy import LocalDeployer

    engine = engine_of(config)
    store = RunStore(engine=engine, schema=config.db_schema)
    jobstore = SQLAlchemyJobStore(
        engine=engine, tablename=config.jobs_table, tableschema=config.db_schema
    )
    peek = BackgroundScheduler(jobstores={"default": jobstore}, timezone=config.timezone)
    create_once(lambda: peek.start(paused=True))
    try:
        scheduled = [
            {
                "id": j.id,
                "name": j.name,
                "next_run_time": j.next_run_time.isoformat() if j.next_run_time else None,
                "trigger": str(j.trigger),
            }
            for j in peek.get_jobs()
        ]
        recent, locks = store.recent(runs), store.held_locks()
    finally:
        peek.shutdown(wait=False)
        engine.dispose()
    local = LocalDeployer.from_config(config)
    served = {b: s for b in config.serve if (s := local.served(b)) is not None}
    return {"jobs": scheduled, "runs": recent, "locks": locks, "served": served}
