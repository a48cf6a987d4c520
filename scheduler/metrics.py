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
    "Unix time at which a job last ended with outcome success",
    ["job"],
)


def observe(job: str, outcome: str, ended_at_s: float) -> None:
    """Count one finished run; on success, set the job's last-success time (Unix seconds)."""
    JOB_RUNS.labels(job=job, outcome=outcome).inc()
    if outcome == "success":
        JOB_LAST_SUCCESS.labels(job=job).set(ended_at_s)
