"""MLflow tracking and registry: where runs go, and the champion/challenger aliases.

Every model follows the same life: each training registers a new version and points the
``challenger`` alias at it; the promotion gate moves ``champion`` to it; rollback moves
``champion`` back to the version that held it before. The order of champions is kept in the
registered model's ``champion_history`` tag (a JSON list of versions), so rollback is exact even
when refused candidates sit between champions.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from finbento.settings import GatePolicy, Settings
from trainers.gate import GateDecision, decide

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "champion_history"

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What one training produced: run, registered version, held-out metrics, gate decision."""

    run_id: str
    version: str
    metrics: dict[str, float]
    decision: GateDecision


class RegistryError(Exception):
    """A registry operation cannot be done (no such model or version, nothing to roll back to)."""


def configure(settings: Settings) -> MlflowClient:
    """Point MLflow at the tracking/registry store in ``settings`` and select the experiment.

    The experiment is created with ``settings.artifact_root`` as its artifact location, so the
    same code writes to a local folder or to S3. HTTP calls are retried
    ``settings.mlflow_http_retries`` times (unless ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` is set).

    Returns:
        an ``MlflowClient`` for that store.

    """
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(settings.mlflow_http_retries))
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    if mlflow.get_experiment_by_name(settings.mlflow_experiment) is None:
        mlflow.create_experiment(
            settings.mlflow_experiment, artifact_location=settings.artifact_root
        )
    mlflow.set_experiment(settings.mlflow_experiment)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


#: MLflow error codes that mean "no such model or alias" (anything else is a real failure).
ABSENT_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})


def get_alias(client: MlflowClient, name: str, alias: str = CHAMPION) -> ModelVersion | None:
    """The version an alias points at, or None if the model or the alias does not exist.

    Raises:
        MlflowException: MLflow failed otherwise (unreachable, 5xx, ...): an outage must not read
            as "no champion", which would let a gate promote without comparing.
    """
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ABSENT_CODES:
            return None
        raise


def latest_version(client: MlflowClient, name: str) -> ModelVersion:
    """The most recently registered version of ``name``.

    Raises:
        RegistryError: if ``name`` has no version.

    """
    versions = client.search_model_versions(f"name = '{name}'", order_by=["version_number DESC"])
    if not versions:
        raise RegistryError(f"no registered versions of {name!r}")
    return max(versions, key=lambda v: int(v.version))


def champion_history(client: MlflowClient, name: str) -> list[str]:
    """Versions that were champion, oldest first."""
    tags = client.get_registered_model(name).tags
    return json.loads(tags.get(HISTORY_TAG, "[]"))


def record_decision(client: MlflowClient, name: str, version: str, decision: GateDecision) -> None:
    """Keep the gate's decision on the model version (tags) and its run (``gate/decision.json``)."""
    mv = client.get_model_version(name, version)
    client.set_model_version_tag(name, version, "gate.promote", str(decision.promote).lower())
    client.set_model_version_tag(name, version, "gate.reasons", "\n".join(decision.reasons)[:4900])
    if mv.run_id:
        client.log_dict(mv.run_id, decision.to_dict(), f"gate/decision-v{version}.json")


def set_champion(client: MlflowClient, name: str, version: str) -> None:
    """Point ``champion`` at ``version`` and append it to the champion history."""
    client.set_registered_model_alias(name, CHAMPION, version)
    version = str(version)
    history = [v for v in champion_history(client, name) if v != version] + [version]
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    challenger = get_alias(client, name, CHALLENGER)
    if challenger is not None and str(challenger.version) == str(version):
        client.delete_registered_model_alias(name, CHALLENGER)
    log.info("%s: champion is now version %s", name, version)


def rollback(client: MlflowClient, name: str) -> str:
    """Move ``champion`` back to the version that was champion before the current one.

    Returns:
        the version that is champion now.

    Raises:
        RegistryError: if there is no earlier champion to go back to.

    """
    current = get_alias(client, name)
    history = champion_history(client, name)
    if current is not None and history and history[-1] == str(current.version):
        history = history[:-1]
    if not history:
        raise RegistryError(f"{name}: no earlier champion to roll back to")
    previous = history[-1]
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    if current is not None:
        client.set_model_version_tag(name, str(current.version), "rolled_back", "true")
    log.info("%s: rolled back champion to version %s", name, previous)
    return previous


def gate_and_promote(
    client: MlflowClient,
    name: str,
    version: str,
    metrics: dict[str, float],
    policy: GatePolicy,
    evaluate_version: Callable[[str], dict[str, float]],
    promote: bool = True,
) -> GateDecision:
    """What every trainer does after registering a version.

    Points ``challenger`` at the version and tags it with its metrics; then, if ``promote``,
    :func:`run_gate`. Arguments as there.

    Returns:
        the decision (a "not evaluated" one when ``promote`` is False).
    """
    client.set_registered_model_alias(name, CHALLENGER, version)
    for key, value in metrics.items():
        client.set_model_version_tag(name, version, f"test_{key}", f"{value:.4f}")
    if not promote:
        return GateDecision(False, ["not evaluated: trained with promote=False"], metrics)
    return run_gate(client, name, version, policy, evaluate_version, metrics, promote=True)


def run_gate(
    client: MlflowClient,
    name: str,
    version: str,
    policy: GatePolicy,
    evaluate_version: Callable[[str], dict[str, float]],
    metrics: dict[str, float] | None = None,
    promote: bool = False,
) -> GateDecision:
    """Gate ``version`` against the champion on the same held-out data; promote if it passes.

    Args:
        client: MLflow client.
        name: registered model name.
        version: the candidate version.
        policy: the model's gate policy.
        evaluate_version: version -> its metrics on the held-out data (candidate and champion).
        metrics: the candidate's metrics if already computed.
        promote: move ``champion`` when the gate passes.

    Returns:
        the decision, also recorded on the version and its run.
    """
    if metrics is None:
        metrics = evaluate_version(version)
    champion = get_alias(client, name)
    old = None
    if champion is not None and str(champion.version) != str(version):
        old = evaluate_version(str(champion.version))
    decision = decide(metrics, old, policy)
    record_decision(client, name, version, decision)
    if promote and decision.promote:
        set_champion(client, name, version)
    return decision
