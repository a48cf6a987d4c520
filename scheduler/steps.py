"""The real steps of a retrain: finbento's trainers, registry, BentoML import and builds.

``settings.apply_environment()`` must have run before this module's steps first run (BentoML
reads ``BENTOML_HOME`` when it is imported); the daemon and the CLI do that.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from types import ModuleType

from scheduler.jobs import RetrainSteps

log = logging.getLogger(__name__)


def trainer(model: str) -> ModuleType:
    """The trainer module of ``model`` (``trainers.TRAINERS``).

    Raises:
        KeyError: unknown model.
    """
    from trainers import TRAINERS

    return importlib.import_module(TRAINERS[model])


def champion_version(client, model: str) -> str | None:
    """The version ``champion`` points at; None only if the model or the alias does not exist.

    An unreachable or failing MLflow raises instead of reading as "no champion": a retrain must
    not record a wrong champion, skip a bundle as having none, or skip the rollback because of a
    network error (:func:`trainers.registry.get_alias`).

    Args:
        client: ``mlflow.MlflowClient`` of the registry.
        model: registered model name.

    Raises:
        mlflow.exceptions.MlflowException: MLflow failed (unreachable, 5xx, ...).
    """
    from trainers.registry import get_alias

    champion = get_alias(client, model)
    return None if champion is None else str(champion.version)


def real_steps(
    settings,
    deploy: Callable[[str, str, Sequence[str]], list[str]],
    sample: dict[str, int] | None = None,
) -> RetrainSteps:
    """The retrain steps of finbento: its trainers, registry, import and Bento builds.

    Training is ``trainers.<model>.train(settings, promote=True)``; builds are
    ``finbento.bentos.build``.

    Args:
        settings: ``finbento.settings.Settings`` (data, MLflow, gates).
        deploy: (bundle, tag, models) -> targets, e.g. a :class:`scheduler.deploy.Deployer`.
        sample: model -> rows to train on (tests); default all the data.
    """
    from trainers import registry

    def client():
        return registry.configure(settings)

    def train(model: str):
        def on_stage(label: str) -> None:
            log.info("%s: %s", model, label)

        n = (sample or {}).get(model)
        return trainer(model).train(settings, sample=n, promote=True, on_stage=on_stage)

    def champion(model: str) -> str | None:
        return champion_version(client(), model)

    def import_champion(model: str) -> tuple[str, str]:
        from trainers import bento_import

        bento_model = bento_import.import_champion(client(), model, trainer(model).export)
        return str(bento_model.tag), str(bento_model.info.labels["mlflow_version"])

    def build(bundle: str, tags: dict[str, str], versions: dict[str, str]) -> str:
        from finbento import bentos

        return bentos.build(bundle, tags, versions)

    def rollback(model: str) -> str:
        return registry.rollback(client(), model)

    return RetrainSteps(train, champion, import_champion, build, deploy, rollback)
