"""Fitting and scoring the term-deposit propensity of the ``recommender`` (bank marketing).

Data: ``uci_bank_marketing/bank-additional-full.csv.gz`` (the shipped 80 % of the UCI file). The
features are finbento.deposit_propensity's: ``duration``, the current call's fields and the
economic context are left out (see there). Split: 60/20/20 stratified by ``y`` (seed
``settings.seed``); the model is fitted on train + validation and scored on test.

Model: scikit-learn histogram gradient boosting with native categorical splits (missing ages
handled natively), calibrated by Platt scaling (``CalibratedClassifierCV``, sigmoid, fitted on
3-fold out-of-fold scores; one model on all rows, ``ensemble=False``, so a request runs one
booster, not three, at the same ROC AUC) so its probability can be compared with the base rate in
the hybrid ranking. Saved with skops.
"""

from __future__ import annotations

import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from finbento.datasets import load_bank_marketing
from finbento.deposit_propensity import (
    CATEGORICAL,
    CATEGORIES,
    NUMERIC,
    DepositPropensity,
    from_bank_marketing,
)
from finbento.settings import Settings
from trainers.evaluation import binary_metrics
from trainers.splits import Split, stratified_sample, stratified_split

BANK_FILE = "uci_bank_marketing/bank-additional-full.csv.gz"
TARGET = "y"


def load_split(settings: Settings, sample: int | None = None) -> Split:
    """The bank-marketing rows, split 60/20/20 by ``y``; ``sample`` rows in all (tests).

    The split is made on all rows first, so a sampled test part lies inside the full one.
    """
    df = load_bank_marketing(settings.recommender_data_path / BANK_FILE)
    split = stratified_split(df, TARGET, settings.seed)
    if sample is None or sample >= len(df):
        return split
    return Split(*(stratified_sample(part, TARGET, round(sample * len(part) / len(df)),
                                     settings.seed) for part in split))  # fmt: skip


def build_pipeline(seed: int) -> CalibratedClassifierCV:
    """Unfitted calibrated gradient boosting on the propensity feature frame."""
    encoder = OrdinalEncoder(categories=[list(CATEGORIES[c]) for c in CATEGORICAL],
                             handle_unknown="use_encoded_value", unknown_value=-1)  # fmt: skip
    features = ColumnTransformer(
        [("categorical", encoder, list(CATEGORICAL)), ("numeric", "passthrough", list(NUMERIC))]
    )
    boosting = HistGradientBoostingClassifier(
        categorical_features=list(range(len(CATEGORICAL))), learning_rate=0.1, max_iter=150,
        max_leaf_nodes=15, l2_regularization=1.0, early_stopping=True, random_state=seed,
    )  # fmt: skip
    pipeline = Pipeline([("features", features), ("boosting", boosting)])
    return CalibratedClassifierCV(pipeline, method="sigmoid", cv=3, ensemble=False)


def fit(rows: pd.DataFrame, seed: int) -> DepositPropensity:
    """Fit on raw bank-marketing ``rows``; the base rate is their share of subscriptions."""
    model = build_pipeline(seed).fit(from_bank_marketing(rows), rows[TARGET])
    return DepositPropensity(model, float(rows[TARGET].mean()))


def evaluate(propensity: DepositPropensity, rows: pd.DataFrame) -> dict[str, float]:
    """``deposit_*`` metrics (trainers.evaluation.binary_metrics) on held-out raw ``rows``."""
    probability = propensity.pipeline.predict_proba(from_bank_marketing(rows))[:, 1]
    return {f"deposit_{k}": v for k, v in binary_metrics(rows[TARGET], probability).items()}
