"""Import a registered MLflow model version into the BentoML model store.

The BentoML model is written in the model's fast native format by that model's trainer (for
``credit-risk``: XGBoost's ``model.ubj`` plus ``scorer.json``), never as a generic pyfunc, and
carries its MLflow lineage as labels and the sha256 of every file it wrote as metadata
(``files_sha256``, finbento/model_integrity.py: builds refuse a model whose files changed).
Its tag is ``<name>:v<version>-<run id[:8]>``, so the same registered version always maps to
the same BentoML model and a re-import is a no-op.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import bentoml
from bentoml.exceptions import NotFound
from mlflow import MlflowClient

from finbento import model_integrity
from finbento.log_privacy import mask_url
from trainers import registry

#: Writes the serving files of one registered version into a directory: (version, directory).
Exporter = Callable[[str, Path], None]


def bento_tag(name: str, version: str, run_id: str) -> str:
    """BentoML tag of a registered MLflow version, e.g. ``credit-risk:v3-1a2b3c4d``."""
    return f"{name}:v{version}-{run_id[:8]}"


def import_version(
    client: MlflowClient, name: str, version: str, export: Exporter
) -> bentoml.Model:
    """Import one registered version (idempotent).

    Args:
        client: MLflow client of the registry.
        name: registered model name, e.g. ``credit-risk``; also the BentoML model name.
        version: registered model version.
        export: the model's exporter, writing its serving files into the new model's folder.

    Returns:
        the BentoML model (the existing one if this version was imported before).

    Raises:
        mlflow.exceptions.MlflowException: if the version does not exist.

    """
    mv = client.get_model_version(name, version)
    tag = bento_tag(name, mv.version, mv.run_id)
    try:
        return bentoml.models.get(tag)
    except NotFound:
        pass
    run = client.get_run(mv.run_id)
    labels = {
        "mlflow_model": name,
        "mlflow_version": str(mv.version),
        "mlflow_run_id": mv.run_id,
        **{k: f"{v:.4f}" for k, v in run.data.metrics.items() if k.startswith("test_")},
    }
    metadata = {"mlflow_tracking_uri": mask_url(client.tracking_uri),  # packaged: no password
                "metrics": dict(run.data.metrics)}  # fmt: skip
    with bentoml.models.create(tag, labels=labels, metadata=metadata) as model:
        export(str(mv.version), Path(model.path))
        # the digest of every exported file, checked before any build packages the model
        model.info.metadata[model_integrity.METADATA_KEY] = model_integrity.digest_files(
            Path(model.path)
        )
    return bentoml.models.get(tag)


def import_champion(client: MlflowClient, name: str, export: Exporter) -> bentoml.Model:
    """Import the version that the ``champion`` alias points at.

    Raises:
        registry.RegistryError: if ``name`` has no champion.

    """
    champion = registry.get_alias(client, name)
    if champion is None:
        raise registry.RegistryError(f"{name} has no champion: train and promote a version first")
    return import_version(client, name, str(champion.version), export)
