"""Job run records and job locks, in the scheduler's database (sqlite or PostgreSQL).

Two SQLAlchemy Core tables, next to APScheduler's job table:

- ``finbento_job_runs``: one row per finished job run (what ran, on which model versions, the
  outcome ``success`` / ``rejected`` / ``failed`` / ``skipped`` and why, the Bentos it built).
- ``finbento_job_locks``: one row per running job (``job`` is the primary key), so two daemons
  sharing a database never run the same job at once. A lock is taken in one transaction, by an
  ``UPDATE ... WHERE expires_at < now`` of an expired row or an ``INSERT`` of a new one (the
  primary key refuses the second of two racing inserts); the holder renews it while it runs and
  deletes it at the end, and a crashed holder's lock expires.

Times are naive UTC ``datetime`` values (the same on sqlite and PostgreSQL); expiry compares the
daemons' clocks, so keep them in sync (NTP) and ``lock_ttl_s`` well above any skew.

Example::

    store = RunStore("sqlite:///.finbento/scheduler.db")
    with record_run(store, "retrain-credit-risk", model="credit-risk") as run:
        if not run.skipped:
            run.versions_before = {"credit-risk": "3"}
            ...
            run.succeed("version 4 promoted")
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from scheduler import metrics

log = logging.getLogger(__name__)

Outcome = Literal["success", "rejected", "failed", "skipped"]
OUTCOMES: tuple[str, ...] = ("success", "rejected", "failed", "skipped")
RUNS_TABLE = "finbento_job_runs"
LOCKS_TABLE = "finbento_job_locks"
_REASON_MAX = 8000


def utcnow() -> datetime:
    """Now, naive UTC (how every time is stored)."""
    return datetime.now(UTC).replace(tzinfo=None)


def new_owner() -> str:
    """A lock owner id unique to one run: ``<host>:<pid>:<random>``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class JobRun:
    """One job run, as recorded.

    Attributes:
        job: job id, e.g. ``retrain-credit-risk`` or ``drift-check``.
        model: the model concerned, if one.
        started_at: naive UTC.
        ended_at: naive UTC (None while the run is open).
        versions_before: model -> champion version before the run.
        versions_after: model -> champion version after it.
        outcome: ``success``, ``rejected``, ``failed`` or ``skipped`` (None while open).
        reason: why, in words.
        bento_tags: bundle -> Bento tag built (and deployed) by the run.
        id: row id once recorded.
    """

    job: str
    model: str | None = None
    started_at: datetime = field(default_factory=utcnow)
    ended_at: datetime | None = None
    versions_before: dict[str, Any] = field(default_factory=dict)
    versions_after: dict[str, Any] = field(default_factory=dict)
    outcome: Outcome | None = None
    reason: str = ""
    bento_tags: dict[str, str] = field(default_factory=dict)
    id: int | None = None

    @property
    def skipped(self) -> bool:
        """Whether the run did not happen (its lock was held elsewhere)."""
        return self.outcome == "skipped"

    def succeed(self, reason: str = "") -> None:
        """Mark the run successful."""
        self.outcome, self.reason = "success", reason

    def reject(self, reason: str) -> None:
        """Mark the run rejected (it ran, but the gate refused the candidate)."""
        self.outcome, self.reason = "rejected", reason

    def fail(self, reason: str | BaseException) -> None:
        """Mark the run failed, with a reason or the exception that ended it."""
        self.outcome, self.reason = "failed", describe(reason)


def describe(error: str | BaseException) -> str:
    """The reason a run failed: the exception's type and message (and a subprocess's stderr).

    A string is returned as it is.
    """
    if isinstance(error, str):
        return error
    text = f"{type(error).__name__}: {error}"
    stderr = getattr(error, "stderr", None)
    if stderr:
        stderr = stderr.decode(errors="replace") if isinstance(stderr, bytes) else str(stderr)
        text += f"\n{stderr.strip()[-1500:]}"
    return text


def create_once(create: Callable[[], None], tries: int = 3) -> None:
    """Run a create-if-missing step, retrying when another process won the race to create.

    Two daemons, or ``status`` during a first start, may create the same tables at once.

    Raises:
        sqlalchemy.exc.DBAPIError: it still fails after ``tries``.
    """
    for attempt in range(tries):
        try:
            create()
            return
        except (sa.exc.OperationalError, sa.exc.ProgrammingError, IntegrityError):
            if attempt == tries - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


class RunStore:
    """Run records and locks in one database.

    Args:
        url: SQLAlchemy URL (``sqlite:///path.db``, ``postgresql+psycopg://...``).
        schema: database schema of the tables (PostgreSQL), None for the default.
        engine: an existing engine to use instead of ``url``.

    The tables are created if missing.
    """

    def __init__(self, url: str | None = None, schema: str | None = None, engine=None) -> None:
        if engine is None:
            if url is None:
                raise ValueError("RunStore needs a url or an engine")
            engine = sa.create_engine(url, pool_pre_ping=True)
        self.engine: sa.Engine = engine
        self.metadata = sa.MetaData(schema=schema)
        self.runs = sa.Table(
            RUNS_TABLE,
            self.metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("job", sa.String(200), nullable=False, index=True),
            sa.Column("model", sa.String(64), nullable=True),
            sa.Column("started_at", sa.DateTime, nullable=False),
            sa.Column("ended_at", sa.DateTime, nullable=False),
            sa.Column("versions_before", sa.JSON, nullable=False),
            sa.Column("versions_after", sa.JSON, nullable=False),
            sa.Column("outcome", sa.String(16), nullable=False, index=True),
            sa.Column("reason", sa.Text, nullable=False),
            sa.Column("bento_tags", sa.JSON, nullable=False),
        )
        self.locks = sa.Table(
            LOCKS_TABLE,
            self.metadata,
            sa.Column("job", sa.String(200), primary_key=True),
            sa.Column("owner", sa.String(200), nullable=False),
            sa.Column("expires_at", sa.DateTime, nullable=False),
        )
        create_once(lambda: self.metadata.create_all(self.engine))

    # --- records -----------------------------------------------------------------------------

    def add(self, run: JobRun) -> JobRun:
        """Record a finished run (sets ``ended_at`` if unset and ``id``).

        Raises:
            ValueError: if the run has no valid outcome.
        """
        if run.outcome not in OUTCOMES:
            raise ValueError(f"run outcome must be one of {OUTCOMES}, got {run.outcome!r}")
        run.ended_at = run.ended_at or utcnow()
        values = {
            "job": run.job,
            "model": run.model,
            "started_at": run.started_at,
            "ended_at": run.ended_at,
            "versions_before": run.versions_before,
            "versions_after": run.versions_after,
            "outcome": run.outcome,
            "reason": run.reason[:_REASON_MAX],
            "bento_tags": run.bento_tags,
        }
        with self.engine.begin() as conn:
            run.id = conn.execute(sa.insert(self.runs).values(**values)).inserted_primary_key[0]
        metrics.observe(run.job, run.outcome, run.ended_at.replace(tzinfo=UTC).timestamp())
        log.info("%s: %s%s", run.job, run.outcome, f" ({run.reason})" if run.reason else "")
        return run

    def recent(
        self, n: int = 20, job: str | None = None, outcomes: tuple[str, ...] | None = None
    ) -> list[JobRun]:
        """The last ``n`` recorded runs, newest first, optionally of one job and outcomes."""
        query = sa.select(self.runs).order_by(self.runs.c.id.desc()).limit(n)
        if job is not None:
            query = query.where(self.runs.c.job == job)
        if outcomes:
            query = query.where(self.runs.c.outcome.in_(outcomes))
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [JobRun(**dict(row)) for row in rows]

    # --- locks -------------------------------------------------------------------------------

    def acquire(self, job: str, owner: str, ttl_s: float) -> bool:
        """Take the lock of ``job`` for ``owner`` for ``ttl_s`` seconds, if free or expired.

        Returns:
            True if ``owner`` holds the lock now.
        """
        now = utcnow()
        expires = now + timedelta(seconds=ttl_s)
        locks = self.locks
        with self.engine.begin() as conn:
            taken = conn.execute(
                sa.update(locks)
                .where(locks.c.job == job, locks.c.expires_at < now)
                .values(owner=owner, expires_at=expires)
            ).rowcount
        if taken == 1:
            return True
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(locks).values(job=job, owner=owner, expires_at=expires))
        except IntegrityError:
            return False
        return True

    def renew(self, job: str, owner: str, ttl_s: float) -> bool:
        """Push the expiry of a lock ``owner`` holds ``ttl_s`` seconds ahead.

        Returns:
            False if ``owner`` no longer holds it (it expired and someone else took it).
        """
        expires = utcnow() + timedelta(seconds=ttl_s)
        with self.engine.begin() as conn:
            return (
                conn.execute(
                    sa.update(self.locks)
                    .where(self.locks.c.job == job, self.locks.c.owner == owner)
                    .values(expires_at=expires)
                ).rowcount
                == 1
            )

    def release(self, job: str, owner: str) -> None:
        """Drop the lock if ``owner`` holds it (no-op otherwise)."""
        with self.engine.begin() as conn:
            conn.execute(
                sa.delete(self.locks).where(self.locks.c.job == job, self.locks.c.owner == owner)
            )

    def holder(self, job: str) -> tuple[str, datetime] | None:
        """Who holds the lock of ``job`` and until when (naive UTC), if anyone."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(self.locks.c.owner, self.locks.c.expires_at).where(
                    self.locks.c.job == job
                )
            ).first()
        return (row.owner, row.expires_at) if row else None

    def held_locks(self) -> list[dict[str, Any]]:
        """Every unexpired lock: job, owner, expires_at."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(self.locks).where(self.locks.c.expires_at >= utcnow())
            ).mappings()
            return [dict(r) for r in rows]


class _Heartbeat(threading.Thread):
    """Renews a lock every third of its TTL until stopped."""

    def __init__(self, store: RunStore, job: str, owner: str, ttl_s: float) -> None:
        super().__init__(name=f"lock-{job}", daemon=True)
        self.store, self.job, self.owner, self.ttl_s = store, job, owner, ttl_s
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.ttl_s / 3):
            try:
                if not self.store.renew(self.job, self.owner, self.ttl_s):
                    log.warning("%s: lost its lock (expired and taken elsewhere)", self.job)
                    return
            except Exception:  # a database blip: try again at the next beat
                log.exception("%s: could not renew its lock", self.job)


@contextmanager
def record_run(
    store: RunStore,
    job: str,
    model: str | None = None,
    lock_ttl_s: float = 900,
    lock: str | None = None,
) -> Iterator[JobRun]:
    """Hold the job's lock for the block and record the run when it ends.

    If the lock is held elsewhere, the yielded run is already ``skipped`` (the block should
    return at once) and is recorded as such. An exception escaping the block records the run
    as ``failed`` with the exception and is re-raised; a block that sets no outcome is recorded
    as ``success``.

    Args:
        store: where runs and locks live.
        job: job id (also the lock's name unless ``lock`` is given).
        model: the model concerned.
        lock_ttl_s: lock expiry, renewed every third of it while the block runs (s).
        lock: lock name, when several job ids must exclude each other.

    Yields:
        the run, to fill (versions, outcome, reason, Bento tags).
    """
    lock = lock or job
    owner = new_owner()
    run = JobRun(job=job, model=model)
    if not store.acquire(lock, owner, lock_ttl_s):
        held = store.holder(lock)
        run.outcome = "skipped"
        run.reason = (
            f"lock {lock!r} held by {held[0]} until {held[1]:%Y-%m-%d %H:%M:%S} UTC"
            if held
            else f"lock {lock!r} held elsewhere"
        )
        try:
            yield run
        finally:
            store.add(run)
        return
    beat = _Heartbeat(store, lock, owner, lock_ttl_s)
    beat.start()
    try:
        yield run
    except BaseException as exc:
        log.error("%s failed:\n%s", job, traceback.format_exc())
        run.fail(exc)
        raise
    finally:
        beat.stopped.set()
        if run.outcome is None:
            run.succeed(run.reason)
        try:
            store.add(run)
        finally:
            store.release(lock, owner)
