"""Scoring for the ``fraud`` model: XGBoost probability that a card transaction is fraudulent."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from finbento.features.transactions import FEATURES

MODEL_NAME = "fraud"
BOOSTER_FILE = "model.ubj"
SCORER_FILE = "scorer.json"


@dataclass
class FraudScorer:
    """An XGBoost booster on :data:`~finbento.features.transactions.FEATURES` and its threshold.

    Attributes:
        booster: ``xgboost.Booster`` (binary:logistic).
        threshold: probability at or above which a transaction is flagged (chosen on validation
            days to maximise F1, see trainers/fraud.py).
    """

    booster: object
    threshold: float

    def probability(self, features: np.ndarray) -> np.ndarray:
        """Fraud probability, shape (n,), of feature rows of shape (n, 18)."""
        return self.booster.inplace_predict(np.asarray(features, dtype=np.float32))

    def save(self, directory: Path) -> None:
        """Write ``model.ubj`` and ``scorer.json`` into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(directory / BOOSTER_FILE))
        (directory / SCORER_FILE).write_text(
            json.dumps({"threshold": self.threshold, "features": list(FEATURES)})
        )

    @classmethod
    def load(cls, directory: Path, nthread: int = 1) -> FraudScorer:
        """Load what :meth:`save` wrote.

        Raises:
            ValueError: if the model was trained on other features than this code defines.
        """
        import xgboost as xgb

        meta = json.loads((Path(directory) / SCORER_FILE).read_text())
        if tuple(meta["features"]) != FEATURES:
            raise ValueError("model was trained on other features than this code defines")
        booster = xgb.Booster(model_file=str(Path(directory) / BOOSTER_FILE))
        booster.set_param({"nthread": nthread})
        return cls(booster, float(meta["threshold"]))
