"""MLflow pyfunc for models served from a directory of files (ONNX, spaCy, ...).

MLflow has no flavour that keeps such a model in the exact files BentoML serves, so the registered
model is a ``mlflow.pyfunc`` whose single artifact ``model_dir`` is that directory and whose
``predict`` calls the model's own scorer class (named in ``model_config["scorer"]``). It is logged
as "models from code" (this file is the model's code), so nothing is pickled. ``export`` in each
trainer copies ``model_dir`` into the BentoML model store unchanged: MLflow and BentoML hold the
same bytes.
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import mlflow
import pandas as pd

ARTIFACT = "model_dir"


class DirectoryModel(mlflow.pyfunc.PythonModel):
    """Pyfunc that loads ``model_config["scorer"]`` (``"module:Class"``) from ``model_dir``.

    The class is built with its ``load(directory)`` class method if it has one, else with
    ``Class(directory)``, and must offer ``predict_frame(DataFrame) -> DataFrame``.
    """

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        """Build the scorer from the artifact directory."""
        module, cls = context.model_config["scorer"].split(":")
        scorer_class = getattr(importlib.import_module(module), cls)
        self.model = getattr(scorer_class, "load", scorer_class)(Path(context.artifacts[ARTIFACT]))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """Score a DataFrame through the scorer's ``predict_frame``."""
        return self.model.predict_frame(model_input)


def log_directory_model(
    directory: Path,
    scorer: str,
    registered_name: str,
    example: pd.DataFrame,
    requirements: list[str],
    metadata: dict | None = None,
) -> mlflow.models.model.ModelInfo:
    """Log ``directory`` as a :class:`DirectoryModel` under ``model`` and register it.

    Args:
        directory: the served files.
        scorer: ``"module:Class"`` of the scorer.
        registered_name: registered model name.
        example: input example (also gives the signature).
        requirements: pip requirements of the pyfunc.
        metadata: extra MLflow model metadata.
    """
    return mlflow.pyfunc.log_model(
        name="model", python_model=__file__, artifacts={ARTIFACT: str(directory)},
        model_config={"scorer": scorer}, registered_model_name=registered_name,
        input_example=example, pip_requirements=requirements, metadata=metadata,
        code_paths=[str(Path(importlib.import_module("finbento").__file__).parent)],
    )  # fmt: skip


def export_directory(name: str, version: str, directory: Path) -> None:
    """Copy the ``model_dir`` artifact of registered ``name`` ``version`` into ``directory``.

    Raises:
        mlflow.exceptions.MlflowException: if the version does not exist.
    """
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}"))
    shutil.copytree(local / "artifacts" / ARTIFACT, directory, dirs_exist_ok=True)


mlflow.models.set_model(DirectoryModel())
