"""What the scheduler daemon needs to know: schedules, database, deploy targets.

:class:`SchedulerConfig` is plain pydantic (no settings source of its own), so
``finbento.settings.Settings`` can carry it as a nested field (``FINBENTO_SCHEDULER__DRIFT_CRON``,
``FINBENTO_SCHEDULER__SERVE='{"all": 3000}'``) and tests can build one directly.
:func:`from_settings` fills what comes from the rest of the settings (the state directory).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr, field_validator

from trainers import TRAINERS

DEFAULT_RETRAIN_CRON = "0 3 * * 1"  # Mondays 03:00
DRIFT_JOB = "drift-check"
_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def retrain_job_id(model: str) -> str:
    """APScheduler job id, lock name and run-record ``job`` of a model's retrain."""
    return f"retrain-{model}"


def crontab_weekdays(field: str) -> str:
    """A crontab day-of-week field (0 or 7 = Sunday, 1 = Monday) as APScheduler day names.

    APScheduler 3 reads weekday *numbers* with 0 = Monday (its ``from_crontab`` keeps that
    historical mismatch, apscheduler issue 286): ``0 3 * * 1`` would fire on Tuesdays. Numbers
    (lists, ranges, steps) are expanded to names, e.g. ``1-5`` -> ``mon,tue,wed,thu,fri``,
    ``*/2`` -> ``sun,tue,thu,sat``; names and ``*`` pass through.

    Raises:
        ValueError: an out-of-range day, a reversed range, or names mixed with numbers.
    """
    parts = [part.partition("/") for part in field.split(",")]
    numeric = any(ch.isdigit() for base, _, _ in parts for ch in base)
    if not numeric and not any(base == "*" and step for base, _, step in parts):
        return field
    days: set[int] = set()
    for base, _, step in parts:
        if any(ch.isalpha() for ch in base):
            raise ValueError(f"day of week {field!r}: use numbers or names, not both")
        if base == "*":
            low, high = 0, 6
        elif "-" in base:
            low, high = (int(x) for x in base.split("-", 1))
        else:
            low = high = int(base)
            high = 6 if step else high
        if not (0 <= low <= high <= 7):
            raise ValueError(f"day of week {field!r}: days are 0-7 (0 and 7 are Sunday)")
        days.update(d % 7 for d in range(low, high + 1, int(step or 1)))
    return ",".join(_CRON_DAYS[d] for d in sorted(days))


def cron_trigger(expr: str, timezone: str = "UTC"):
    """An APScheduler ``CronTrigger`` from a standard 5-field crontab line.

    Args:
        expr: minute hour day-of-month month day-of-week, e.g. ``0 3 * * 1`` (Mondays 03:00).
        timezone: IANA time zone the times are in.

    Raises:
        ValueError: not 5 fields, or a field APScheduler refuses.
    """
    from apscheduler.triggers.cron import CronTrigger

    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"cron {expr!r}: expected 5 fields (minute hour day month weekday)")
    minute, hour, day, month, weekday = fields
    return CronTrigger(
        minute=minute, hour=hour, day=day, month=month,
        day_of_week=crontab_weekdays(weekday), timezone=timezone,
    )  # fmt: skip


class SchedulerConfig(BaseModel):
    """Schedules, storage and deployment of the unattended loop.

    Cron strings are standard 5-field crontab lines (minute hour day month weekday), read with
    ``apscheduler.triggers.cron.CronTrigger.from_crontab`` in :attr:`timezone`.
    """

    state_dir: Path | None = Field(
        None, description="Local state; default the settings' state_dir (see from_settings)."
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the job store, run records and locks; default "
        "sqlite:///<state_dir>/scheduler.db (e.g. postgresql+psycopg://user@db:5432/finbento).",
    )
    db_schema: str | None = Field(
        None, description="Database schema of the scheduler's tables (PostgreSQL); None: default."
    )
    jobs_table: str = Field("finbento_apscheduler_jobs", description="APScheduler's job table.")
    timezone: str = Field("UTC", description="Time zone of the cron strings (IANA name).")
    misfire_grace_time_s: int = Field(
        600, ge=1, description="A run that missed its time by more than this is skipped (s)."
    )
    drift_cron: str = Field("0 * * * *", description="When the drift check runs (hourly).")
    drift_models: list[str] = Field(
        default_factory=lambda: list(TRAINERS), description="Models the drift check looks at."
    )
    drift_window: int = Field(
        5000, ge=1, description="Prediction-log rows the drift check compares (current data)."
    )
    retrain_cron: dict[str, str] = Field(
        default_factory=lambda: dict.fromkeys(TRAINERS, DEFAULT_RETRAIN_CRON),
        description="Model -> when it is retrained (weekly by default); a model absent here "
        "is only retrained on critical drift.",
    )
    retrain_on_critical_drift: bool = Field(
        True, description="A critical drift level triggers the model's retrain at once."
    )
    drift_retrain_cooldown_s: int = Field(
        86_400,
        ge=0,
        description="No drift-triggered retrain of a model within this long of its last "
        "successful or rejected retrain (s): retraining on the same data cannot fix drift.",
    )
    bundles: list[str] | None = Field(
        None,
        description="Bundles rebuilt after a promotion (those that contain the model); "
        "None: every bundle of finbento.bentos.BUNDLES.",
    )
    serve: dict[str, int] = Field(
        default_factory=dict,
        description="Bundle -> public port of its local front (HAProxy); a promotion swaps the "
        "served Bento with no failed request. Empty: no local deploy.",
    )
    serve_host: str = Field("127.0.0.1", description="Address the local fronts listen on.")
    serve_env: dict[str, str] = Field(
        default_factory=dict, description="Extra environment of the served `bentoml serve`."
    )
    haproxy_bin: str = Field("haproxy", description="HAProxy executable (Debian: haproxy).")
    ready_timeout_s: float = Field(
        300, gt=0, description="How long a new Bento may take to answer /readyz (s)."
    )
    drain_timeout_s: float = Field(
        60, ge=0, description="How long in-flight requests may take on the old Bento (s)."
    )
    stop_timeout_s: float = Field(
        30, gt=0, description="SIGTERM to SIGKILL of the old Bento's processes (s)."
    )
    deploy_command: str | None = Field(
        None,
        description="Ops hook run after each build: a command line (no shell), '{bundle}', "
        "'{tag}' and '{models}' substituted; also in FINBENTO_DEPLOY_* variables.",
    )
    deploy_webhook_url: str | None = Field(
        None, description="Ops hook: POST JSON {bundle, tag, models} here after each build."
    )
    deploy_webhook_token: SecretStr | None = Field(
        None, description="Bearer token sent to the deploy webhook."
    )
    deploy_hook_timeout_s: float = Field(
        600, gt=0, description="Limit on the deploy command or webhook (s)."
    )
    lock_ttl_s: int = Field(
        900,
        ge=10,
        description="A job's lock expires this long after its last heartbeat (renewed every "
        "third of it while the job runs), so a crashed daemon frees it (s).",
    )
    rollback_on_failure: bool = Field(
        True,
        description="A promoted model whose build or deploy then fails goes back to the "
        "previous champion (nothing new was deployed), so the registry names what serves.",
    )
    metrics_host: str = Field("127.0.0.1", description="Address of the daemon's /metrics.")
    metrics_port: int = Field(9102, ge=0, le=65535, description="Port of /metrics; 0: off.")
    retrain_threads: int = Field(
        1, ge=1, description="Retrains running at once (each uses the cores it finds)."
    )

    @field_validator("drift_models")
    @classmethod
    def _known_models(cls, models: list[str]) -> list[str]:
        unknown = sorted(set(models) - set(TRAINERS))
        if unknown:
            raise ValueError(f"unknown models {unknown}; known: {list(TRAINERS)}")
        return models

    @field_validator("retrain_cron")
    @classmethod
    def _known_retrains(cls, crons: dict[str, str]) -> dict[str, str]:
        cls._known_models(list(crons))
        for cron in crons.values():
            cron_trigger(cron)
        return crons

    @field_validator("drift_cron")
    @classmethod
    def _valid_cron(cls, cron: str) -> str:
        cron_trigger(cron)
        return cron

    @property
    def state_path(self) -> Path:
        """The state directory in force (absolute)."""
        return (self.state_dir or Path(".finbento")).resolve()

    @property
    def url(self) -> str:
        """The database URL in force."""
        return self.database_url or f"sqlite:///{self.state_path / 'scheduler.db'}"


def from_settings(settings: Any) -> SchedulerConfig:
    """The scheduler config of a ``finbento.settings.Settings``.

    Uses ``settings.scheduler`` when the settings carry one (else the defaults) and fills its
    ``state_dir`` from ``settings.state_dir`` when unset.
    """
    config = getattr(settings, "scheduler", None) or SchedulerConfig()
    if config.state_dir is None:
        config = config.model_copy(update={"state_dir": Path(settings.state_dir)})
    return config
