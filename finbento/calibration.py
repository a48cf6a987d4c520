"""Platt scaling: a monotone map from a model's margin (log-odds) to a calibrated probability.

Platt, J. (1999). Probabilistic outputs for support vector machines. The map is
``p = 1 / (1 + exp(-(a * margin + b)))``; being strictly monotone (a > 0) it keeps the ranking, so
ROC AUC is unchanged while probabilities match observed default rates. Fitting lives with the
trainers (it needs scikit-learn); applying it needs numpy only, so it runs in the serving image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class PlattCalibrator:
    """Calibrated probability from a margin: ``sigmoid(a * margin + b)``.

    Attributes:
        a: slope applied to the margin (log-odds units).
        b: intercept (log-odds units).

    """

    a: float = 1.0
    b: float = 0.0

    def log_odds(self, margin: np.ndarray) -> np.ndarray:
        """Calibrated log-odds of shape ``margin.shape``."""
        return self.a * np.asarray(margin, dtype=np.float64) + self.b

    def probability(self, margin: np.ndarray) -> np.ndarray:
        """Calibrated probability in [0, 1], of shape ``margin.shape``."""
        return 1.0 / (1.0 + np.exp(-self.log_odds(margin)))

    def to_dict(self) -> dict[str, float]:
        """JSON-ready parameters."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, float]) -> PlattCalibrator:
        """Inverse of :meth:`to_dict`."""
        return cls(a=float(data["a"]), b=float(data["b"]))
