"""Prometheus metrics of the scheduler daemon (exposed on its own /metrics port)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

JOB_RUNS = Counter(
    "ml_job_runs",
    "Scheduler job runs by job id and outcome (success, rejected, failed, skipped)",
    ["job", "outcome"],
)
JOB_LAST_SUCCESS = Gauge(
    "ml_job_last_success_timestamp_seconds",
    "Unix time at which a job last ended without failing (outcome success or rejected)",
    ["job"],
)


OUTCOMES = ("success", "rejected", "failed", "skipped")


def declare(jobs: list[str]) -> None:
    """Create every ``ml_job_runs_total{job,outcome}`` series at 0.

    A counter series that first appears at 1 hides that first event from ``increase()``: the
    "job failing" alert would miss a weekly retrain's first failure.
    """
    for job in jobs:
        for outcome in OUTCOMES:
            JOB_RUNS.labels(job=job, outcome=outcome)


def observe(job: str, outcome: str, ended_at_s: float) -> None:
    """Count one finished run; unless it failed or was skipped, set its last-success time.

    A ``rejected`` retrain ran to the end (the candidate was not better): the job is healthy, so
    it counts for ``ml_job_last_success_timestamp_seconds`` (the "not run on time" alert).

    Args:
        job: job id (``drift-check``, ``retrain-<model>``).
        outcome: ``success``, ``rejected``, ``failed`` or ``skipped``.
        ended_at_s: when the run ended (Unix seconds).
    """
    JOB_RUNS.labels(job=job, outcome=outcome).inc()
    if outcome in ("success", "rejected"):
        JOB_LAST_SUCCESS.labels(job=job).set(ended_at_s)
