"""Scoring for the ``credit-risk`` model: probability of default, risk score, band and reasons.

The same :class:`CreditRiskScorer` scores the test split in training, the champion in the
promotion gate, and requests in the service, so the three cannot disagree.

Risk bands (cut-offs on ``risk_score = round(100 * default_probability)``; the data's base default
rate is 22 %):

- ``low``: score < 20 (probability of default under 20 %, below the base rate);
- ``medium``: 20 <= score < 50;
- ``high``: score >= 50 (default more likely than not): the adverse decision, also the one the
  fairness check measures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from finbento.calibration import PlattCalibrator
from finbento.features.credit_risk import FEATURES, PLAIN_NAMES, feature_matrix

MODEL_NAME = "credit-risk"
MEDIUM_MIN_SCORE = 20
HIGH_MIN_SCORE = 50
HIGH_MIN_PROBABILITY = HIGH_MIN_SCORE / 100
RiskBand = Literal["low", "medium", "high"]

BOOSTER_FILE = "model.ubj"
SCORER_FILE = "scorer.json"


def risk_band(score: int) -> RiskBand:
    """Band of a 0-100 risk score (cut-offs in the module docstring)."""
    if score >= HIGH_MIN_SCORE:
        return "high"
    return "medium" if score >= MEDIUM_MIN_SCORE else "low"


def risk_score(probability: float) -> int:
    """Risk score 0-100 (higher = riskier) of a probability of default."""
    return round(100 * float(probability))


def top_reasons(contributions: np.ndarray, k: int = 3) -> list[tuple[str, float]]:
    """The ``k`` features that push one applicant's risk up the most.

    Args:
        contributions: shape (29,), each feature's contribution to the calibrated log-odds of
            default (SHAP values from XGBoost's ``pred_contribs``, scaled by the Platt slope).
        k: how many reasons at most.

    Returns:
        up to ``k`` (plain-words feature name, contribution) pairs, largest first; only features
        with a positive contribution (those that raise the risk) are named.

    """
    order = np.argsort(-contributions)[:k]
    return [
        (PLAIN_NAMES[FEATURES[i]], float(contributions[i])) for i in order if contributions[i] > 0
    ]


@dataclass
class CreditRiskScorer:
    """An XGBoost booster with its Platt calibrator.

    Attributes:
        booster: ``xgboost.Booster`` trained on :data:`FEATURES` (binary:logistic).
        calibrator: maps the booster's margin to a calibrated probability of default.
        nthread: OpenMP threads for building XGBoost's input (None: XGBoost's default, all
            cores). A serving worker uses 1: on busy cores the default's thread start-up turned a
            0.2 ms DMatrix into 1-15 ms.

    """

    booster: object
    calibrator: PlattCalibrator
    nthread: int | None = None

    def _dmatrix(self, raw: np.ndarray) -> object:
        import xgboost as xgb

        names = list(FEATURES)
        return xgb.DMatrix(feature_matrix(raw), feature_names=names, nthread=self.nthread)

    def score(self, raw: np.ndarray) -> np.ndarray:
        """Score raw applicant rows.

        Args:
            raw: shape (n, 23), columns in ``RAW_COLUMNS`` order.

        Returns:
            float64 array of shape (n, 30): column 0 the calibrated probability of default, columns
            1..29 each feature's contribution to the calibrated log-odds (same order as FEATURES).

        """
        contribs = self.booster.predict(self._dmatrix(raw), pred_contribs=True)
        margin = contribs.sum(axis=1)  # features + bias = the booster's margin
        probability = self.calibrator.probability(margin)
        return np.column_stack([probability, self.calibrator.a * contribs[:, :-1]])

    def default_probability(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probability of default, shape (n,), for raw rows of shape (n, 23)."""
        margin = self.booster.predict(self._dmatrix(raw), output_margin=True)
        return self.calibrator.probability(margin)

    def save(self, directory: Path) -> None:
        """Write ``model.ubj`` (XGBoost's binary format) and ``scorer.json`` into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(directory / BOOSTER_FILE))
        (directory / SCORER_FILE).write_text(
            json.dumps({"calibration": self.calibrator.to_dict(), "features": list(FEATURES)})
        )

    @classmethod
    def load(cls, directory: Path, nthread: int = 1) -> CreditRiskScorer:
        """Load what :meth:`save` wrote.

        Raises:
            ValueError: if the saved feature list differs from this code's :data:`FEATURES`.

        """
        import xgboost as xgb

        meta = json.loads((Path(directory) / SCORER_FILE).read_text())
        if tuple(meta["features"]) != FEATURES:
            raise ValueError("model was trained on other features than this code defines")
        booster = xgb.Booster(model_file=str(Path(directory) / BOOSTER_FILE))
        booster.set_param({"nthread": nthread})
        return cls(booster, PlattCalibrator.from_dict(meta["calibration"]), nthread)
