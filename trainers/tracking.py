"""MLflow logging every trainer shares: evaluation plots, feature importance, drift reference."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd

from trainers.evaluation import evaluation_plots, importance_plot

REFERENCE_ROWS = 5000
#: Progress callback: called with a short label as each training stage starts.
Stage = Callable[[str], None]


def log_evaluation_plots(y_true: np.ndarray, score: np.ndarray) -> None:
    """ROC, PR and calibration curves into the active run, under ``plots/``."""
    for name, fig in evaluation_plots(y_true, score).items():
        mlflow.log_figure(fig, f"plots/{name}")
        plt.close(fig)


def log_booster_importance(booster: object, features: Sequence[str], model_name: str) -> None:
    """XGBoost total-gain importance as ``feature_importance.json`` and a bar chart."""
    gain = booster.get_score(importance_type="total_gain")
    importance = {f: float(gain.get(f, 0.0)) for f in features}
    mlflow.log_dict(importance, "feature_importance.json")
    fig = importance_plot(importance, f"{model_name}: XGBoost total gain")
    mlflow.log_figure(fig, "plots/feature_importance.png")
    plt.close(fig)


def log_reference(data: pd.DataFrame, seed: int = 0) -> None:
    """A sample of training data (up to 5,000 rows) as ``reference/reference.parquet``.

    Drift checks compare what a served version sees with what it learned from.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "reference.parquet"
        data.sample(min(REFERENCE_ROWS, len(data)), random_state=seed).to_parquet(path, index=False)
        mlflow.log_artifact(str(path), artifact_path="reference")
