"""The scheduler's jobs: retrain a model, check drift.

Both take what they act on as arguments (the run store, the retrain steps, the drift check, the
notifier), so the daemon wires the real ones (:mod:`scheduler.steps`, ``monitoring.drift``,
``monitoring.notify``) and tests pass small fakes. Neither raises: every run is recorded with
its outcome and reason (:mod:`scheduler.runs`) and people hear about promotions, rejections,
failures and drift through ``notify``.

A retrain: champion before -> train on the latest data -> the gate decides (the trainer moves
``champion`` if it passes) -> on promotion, import each champion of every bundle containing the
model into the BentoML store and build that bundle's Bento (all builds first) -> deploy each
Bento. If any step fails, the run is ``failed`` with the reason, nothing more is deployed, and
(``rollback_on_failure``) a champion whose Bento never got deployed goes back to the previous
one, so what serves and what the registry calls champion stay the same.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, Protocol

from finbento.bentos import BUNDLES
from scheduler.config import DRIFT_JOB, retrain_job_id
from scheduler.runs import JobRun, RunStore, describe, record_run, utcnow

log = logging.getLogger(__name__)

DetailValue = str | int | float | bool


@dataclass(frozen=True)
class JobEvent:
    """Something people should hear about; the fields of ``monitoring.notify.Event``.

    Attributes:
        kind: ``drift``, ``promotion``, ``rejection`` or ``failure``.
        severity: ``info``, ``warning`` or ``critical``.
        title: one line.
        details: facts (str keys, str/number/bool values).
        model: the model concerned, if any.
    """

    kind: Literal["drift", "promotion", "rejection", "failure"]
    severity: Literal["info", "warning", "critical"]
    title: str
    details: dict[str, DetailValue] = field(default_factory=dict)
    model: str | None = None


Notify = Callable[[JobEvent], None]


def log_notify(event: JobEvent) -> None:
    """The notifier of last resort: a log line."""
    log.warning("[%s] %s: %s %s", event.severity.upper(), event.kind, event.title, event.details)


class Decision(Protocol):
    """What the gate decided (``trainers.gate.GateDecision``)."""

    promote: bool
    reasons: list[str]


class Trained(Protocol):
    """What a training returns (``trainers.registry.TrainResult``)."""

    version: str
    metrics: dict[str, float]
    decision: Decision


@dataclass
class RetrainSteps:
    """The steps of a retrain, one callable each (see :func:`scheduler.steps.real_steps`).

    Attributes:
        train: model -> train on the latest data, register, gate (promote if it passes).
        champion: model -> its champion version, None if it has none.
        import_champion: model -> (BentoML model tag, MLflow version) of its champion, imported.
        build: (bundle, model tags, model versions) -> the Bento tag built.
        deploy: (bundle, Bento tag, models) -> the targets deployed to (may be empty).
        rollback: model -> champion back to the previous one; the version now champion.
    """

    train: Callable[[str], Trained]
    champion: Callable[[str], str | None]
    import_champion: Callable[[str], tuple[str, str]]
    build: Callable[[str, dict[str, str], dict[str, str]], str]
    deploy: Callable[[str, str, Sequence[str]], list[str]]
    rollback: Callable[[str], str]


def bundles_of(model: str, bundles: Sequence[str] | None = None) -> list[str]:
    """The bundles (of ``bundles``, default all) that package ``model``."""
    return [b for b in (BUNDLES if bundles is None else bundles) if model in BUNDLES[b].models]


def _notify(notify: Notify, event: JobEvent) -> None:
    try:
        notify(event)
    except Exception:  # a notifier must never fail a job
        log.exception("notifying %r failed", event.title)


def _numbers(metrics: dict[str, Any]) -> dict[str, DetailValue]:
    return {k: round(float(v), 4) for k, v in metrics.items() if isinstance(v, int | float)}


def retrain(
    model: str,
    store: RunStore,
    steps: RetrainSteps,
    *,
    bundles: Sequence[str] | None = None,
    notify: Notify = log_notify,
    trigger: str = "schedule",
    lock_ttl_s: float = 900,
    rollback_on_failure: bool = True,
) -> JobRun:
    """Retrain ``model``, and on promotion rebuild and deploy its bundles; record the run.

    Args:
        model: model name, e.g. ``credit-risk``.
        store: run records and locks.
        steps: the retrain's steps.
        bundles: bundles to rebuild (those containing the model); None: all of them.
        notify: told of the promotion, rejection or failure.
        trigger: why it runs (``schedule``, ``drift``, ``manual``), kept in the reason.
        lock_ttl_s: expiry of the run's lock (s); the lock ``retrain-<model>`` makes every
            retrain of a model exclusive, whatever triggered it.
        rollback_on_failure: on a failed build/deploy after promotion with nothing deployed,
            move the champion back.

    Returns:
        the recorded run: ``success`` (promoted, built, deployed), ``rejected`` (gate refused),
        ``failed`` (reason says where) or ``skipped`` (another retrain of it runs).
    """
    job = retrain_job_id(model)
    with record_run(store, job, model=model, lock_ttl_s=lock_ttl_s) as run:
        if run.skipped:
            return run
        try:
            _retrain(run, model, steps, bundles, notify, trigger, rollback_on_failure)
        except Exception as exc:
            log.exception("%s: retrain failed", model)
            run.fail(f"{trigger}: {describe(exc)}")
        if run.outcome == "failed":
            title = f"{model}: retrain failed"
            _notify(notify, JobEvent("failure", "critical", title, {"reason": run.reason}, model))
    return run


def _retrain(
    run: JobRun,
    model: str,
    steps: RetrainSteps,
    bundles: Sequence[str] | None,
    notify: Notify,
    trigger: str,
    rollback_on_failure: bool,
) -> None:
    before = steps.champion(model)
    run.versions_before = {model: before}
    log.info("%s: retraining (%s); champion is version %s", model, trigger, before)
    result = steps.train(model)
    reasons = "; ".join(result.decision.reasons)
    if not result.decision.promote:
        run.versions_after = {model: steps.champion(model)}
        run.reject(f"{trigger}: version {result.version} refused by the gate: {reasons}")
        details = {"version": str(result.version), **_numbers(result.metrics)}
        title = f"{model}: challenger v{result.version} rejected"
        _notify(notify, JobEvent("rejection", "warning", title, details, model))
        return
    run.versions_after = {model: steps.champion(model)}
    log.info("%s: version %s promoted; rebuilding its bundles", model, result.version)
    deployed: list[str] = []
    notes: list[str] = []
    try:
        built = _build(model, steps, bundles, notes)
        run.bento_tags = {b: tag for b, (tag, _) in built.items()}
        for bundle, (tag, models) in built.items():
            targets = steps.deploy(bundle, tag, models)
            deployed.append(f"{tag} -> {', '.join(targets) or 'built only (no deploy target)'}")
    except Exception as exc:
        log.exception("%s: build/deploy after promotion failed", model)
        reason = f"{trigger}: version {result.version} promoted, then {describe(exc)}"
        if deployed:
            reason += f"; already deployed: {'; '.join(deployed)}"
        elif rollback_on_failure and before is not None:
            back = steps.rollback(model)
            run.versions_after = {model: back}
            reason += f"; nothing deployed, champion rolled back to version {back}"
        run.fail(reason)
        return
    summary = "; ".join(deployed + notes) or "no bundle to rebuild"
    run.succeed(f"{trigger}: version {result.version} promoted (was {before}); {summary}")
    details: dict[str, DetailValue] = {
        "version": str(result.version),
        "previous": str(before),
        **{f"bento.{b}": tag for b, tag in run.bento_tags.items()},
        **_numbers(result.metrics),
    }
    title = f"{model}: v{result.version} promoted to champion"
    _notify(notify, JobEvent("promotion", "info", title, details, model))


def _build(
    model: str, steps: RetrainSteps, bundles: Sequence[str] | None, notes: list[str]
) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Import the champions and build every bundle of ``model`` whose models all have one."""
    built: dict[str, tuple[str, tuple[str, ...]]] = {}
    for bundle in bundles_of(model, bundles):
        models = BUNDLES[bundle].models
        missing = [m for m in models if steps.champion(m) is None]
        if missing:
            notes.append(f"{bundle} not built: no champion of {', '.join(missing)}")
            continue
        tags: dict[str, str] = {}
        versions: dict[str, str] = {}
        for m in models:
            tags[m], versions[m] = steps.import_champion(m)
        log.info("%s: building the %s Bento", model, bundle)
        built[bundle] = (steps.build(bundle, tags, versions), models)
    return built


def retrained_recently(store: RunStore, model: str, within_s: float) -> bool:
    """Whether ``model`` had a successful or rejected retrain in the last ``within_s`` s."""
    last = store.recent(1, job=retrain_job_id(model), outcomes=("success", "rejected"))
    return bool(last) and last[0].ended_at >= utcnow() - timedelta(seconds=within_s)


def drift_check(
    models: Sequence[str],
    store: RunStore,
    check: Callable[[str], Any],
    *,
    notify: Notify = log_notify,
    trigger_retrain: Callable[[str, str], None] | None = None,
    cooldown_s: float = 86_400,
    lock_ttl_s: float = 900,
) -> JobRun:
    """Check each model's drift; notify on warning/critical; retrain on critical.

    Args:
        models: models to check.
        store: run records and locks.
        check: model -> a drift result with ``.level`` in ``ok`` / ``warning`` / ``critical``
            (``monitoring.drift.DriftResult``: ``share_drifted``, ``n_current`` and
            ``model_version`` are reported when present), or None when there is nothing to
            check (no current data); an exception fails that model's check only.
        notify: told of every warning or critical level and of failed checks.
        trigger_retrain: (model, reason) -> start that model's retrain; None: never.
        cooldown_s: no retrain is triggered for a model retrained (success or rejected) this
            recently (s).
        lock_ttl_s: expiry of the job's lock (s).

    Returns:
        the recorded run: ``success`` when every check ran (whatever the levels), ``failed``
        when one raised (the others still ran), ``skipped`` when another drift check runs.
    """
    with record_run(store, DRIFT_JOB, lock_ttl_s=lock_ttl_s) as run:
        if run.skipped:
            return run
        lines: list[str] = []
        failures: list[str] = []
        for model in models:
            try:
                result = check(model)
            except Exception as exc:
                log.exception("%s: drift check failed", model)
                failures.append(f"{model}: {describe(exc)}")
                continue
            if result is None:
                lines.append(f"{model}: nothing to check")
                continue
            lines.append(_on_drift(model, result, store, notify, trigger_retrain, cooldown_s))
            if getattr(result, "model_version", None) is not None:
                run.versions_before[model] = str(result.model_version)
        run.versions_after = dict(run.versions_before)
        if failures:
            run.fail("; ".join(failures + lines))
            title = f"drift check failed for {len(failures)} of {len(models)} models"
            _notify(notify, JobEvent("failure", "critical", title, {"reason": run.reason}))
        else:
            run.succeed("; ".join(lines) or "no model to check")
    return run


def _on_drift(
    model: str,
    result: Any,
    store: RunStore,
    notify: Notify,
    trigger_retrain: Callable[[str, str], None] | None,
    cooldown_s: float,
) -> str:
    level = str(result.level)
    share = getattr(result, "share_drifted", None)
    line = f"{model}: {level}"
    if share is not None:
        line += f" ({share:.0%} of features drifted)"
    if level not in ("warning", "critical"):
        return line
    details: dict[str, DetailValue] = {"level": level}
    for name in ("share_drifted", "n_current", "model_version"):
        value = getattr(result, name, None)
        if isinstance(value, DetailValue):
            details[name] = value
    drifted = getattr(result, "drifted_features", None)
    if drifted:
        details["drifted_features"] = ", ".join(list(drifted)[:20])
    title = f"{model}: drift {level}"
    if level == "critical" and trigger_retrain is not None:
        if retrained_recently(store, model, cooldown_s):
            line += " -> no retrain (retrained within the cooldown)"
        else:
            trigger_retrain(model, f"critical drift: {line}")
            line += " -> retrain triggered"
            details["retrain"] = "triggered"
    _notify(notify, JobEvent("drift", level, title, details, model))  # type: ignore[arg-type]
    return line
