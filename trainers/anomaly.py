"""Trainer for ``anomaly``: Isolation Forest on behavioural features, same time split as fraud.

The forest is fitted on the training days without labels. The threshold is the 99th percentile
of the score on the validation days, so about 1 % of ordinary traffic is flagged (a false-positive
rate near 1 %, fraud being under 1 % of transactions). Labels are used only to report, on the test
days: ROC AUC, average precision, detection rate at 1 % false-positive rate (measured on the test
days' genuine transactions) and the share of each fraud scenario caught at the threshold
(1: amount over 220; 2: compromised terminal; 3: compromised card, amounts x5).
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
from mlflow.models import infer_signature
from sklearn.ensemble import IsolationForest

from finbento.anomaly import COLUMNS, MODEL_NAME, TRUSTED_TYPES, AnomalyScorer
from finbento.features.transactions import ANOMALY_FEATURES
from finbento.settings import Settings
from trainers import registry, tracking
from trainers.evaluation import binary_metrics
from trainers.fraud import Prepared, load_split
from trainers.gate import GateDecision
from trainers.registry import TrainResult

PARAMS = {"n_estimators": 200, "max_samples": 4096, "max_features": 1.0}
FLAG_SHARE = 0.01
MAX_TRAIN_ROWS = 200_000

__all__ = ["export", "fit", "gate", "load_split", "train"]


def fit(p: Prepared, seed: int) -> AnomalyScorer:
    """Fit the forest on training days and set the 1 % threshold on validation days."""
    x = p.features.to_numpy(np.float64)
    train = x[p.split.train]
    if len(train) > MAX_TRAIN_ROWS:
        train = train[np.random.default_rng(seed).choice(len(train), MAX_TRAIN_ROWS, replace=False)]
    forest = IsolationForest(**PARAMS, random_state=seed, n_jobs=2).fit(train[:, COLUMNS])
    behaviour = train[:, COLUMNS]
    median = np.median(behaviour, axis=0)
    iqr = np.subtract(*np.percentile(behaviour, [75, 25], axis=0))
    scorer = AnomalyScorer(forest, 0.0, median, np.where(iqr > 0, iqr, 1.0))
    val_scores = scorer.score(x[p.split.validation])
    scorer.threshold = float(np.quantile(val_scores, 1 - FLAG_SHARE))
    return scorer


def evaluate(scorer: AnomalyScorer, p: Prepared) -> dict[str, float]:
    """Test metrics against the labels (see the module docstring)."""
    test = p.split.test
    y = p.df["tx_fraud"].to_numpy()[test]
    score = scorer.score(p.features.to_numpy(np.float64)[test])
    at_1pct = np.quantile(score[y == 0], 1 - FLAG_SHARE)
    flagged = score >= scorer.threshold
    metrics = {
        **{k: v for k, v in binary_metrics(y, score).items() if k != "brier_score"},
        "detection_rate_at_1pct_fpr": float((score[y == 1] >= at_1pct).mean()),
        "flagged_rate": float(flagged.mean()),
        "false_positive_rate_at_threshold": float(flagged[y == 0].mean()),
    }
    if "tx_fraud_scenario" in p.df:
        scenario = p.df["tx_fraud_scenario"].to_numpy()[test]
        for s in (1, 2, 3):
            if (scenario == s).any():
                metrics[f"caught_scenario_{s}"] = float(flagged[scenario == s].mean())
    return metrics


def load_scorer(version: str) -> AnomalyScorer:
    """Load a registered ``anomaly`` version from MLflow."""
    uri = f"models:/{MODEL_NAME}/{version}"
    meta = mlflow.models.get_model_info(uri).metadata or {}
    return AnomalyScorer(mlflow.sklearn.load_model(uri), float(meta["threshold"]),
                         np.array(meta["median"]), np.array(meta["scale"]))  # fmt: skip


def export(version: str, directory: Path) -> None:
    """Write a registered version's serving files (model.skops, scorer.json) into ``directory``."""
    load_scorer(version).save(directory)


def gate(
    client: mlflow.MlflowClient,
    settings: Settings,
    version: str,
    p: Prepared,
    candidate_metrics: dict[str, float] | None = None,
    promote: bool = False,
) -> GateDecision:
    """Gate ``version`` against the champion on the same held-out data (registry.run_gate)."""
    return registry.run_gate(
        client, MODEL_NAME, version, settings.anomaly_gate, lambda v: evaluate(load_scorer(v), p),
        candidate_metrics, promote=promote,
    )  # fmt: skip


def train(
    settings: Settings,
    sample: int | None = None,
    promote: bool = True,
    on_stage: tracking.Stage = lambda s: None,
) -> TrainResult:
    """Train, log, register and (if the gate agrees) promote a new ``anomaly`` version."""
    client = registry.configure(settings)
    on_stage("loading data and computing features")
    p = load_split(settings, sample)
    on_stage("fitting the Isolation Forest")
    scorer = fit(p, settings.seed)
    on_stage("evaluating on the test days")
    metrics = evaluate(scorer, p)
    on_stage("logging to MLflow")
    with mlflow.start_run(run_name=f"{MODEL_NAME}-train") as run:
        mlflow.set_tags({"model_name": MODEL_NAME, "data": "card_transactions_sim"})
        mlflow.log_params({**PARAMS, "seed": settings.seed, "threshold": scorer.threshold,
                           "flag_share": FLAG_SHARE, "features": ",".join(ANOMALY_FEATURES),
                           **{f"split_{k}": v for k, v in p.split.calendar.items()}})  # fmt: skip
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
        test_x = p.features.to_numpy(np.float64)[p.split.test]
        y_test = p.df["tx_fraud"].to_numpy()[p.split.test]
        score = scorer.score(test_x)
        tracking.log_evaluation_plots(y_test, (score - score.min()) / np.ptp(score))
        tracking.log_reference(p.features[p.split.train][list(ANOMALY_FEATURES)])
        example = p.features[p.split.test][list(ANOMALY_FEATURES)].head(5)
        info = mlflow.sklearn.log_model(
            scorer.forest, name="model", registered_model_name=MODEL_NAME,
            skops_trusted_types=TRUSTED_TYPES,
            signature=infer_signature(example, scorer.forest.score_samples(example.to_numpy())),
            input_example=example,
            metadata={"threshold": scorer.threshold, "median": scorer.median.tolist(),
                      "scale": scorer.scale.tolist()},
        )  # fmt: skip
    version = str(info.registered_model_version)
    on_stage("promotion gate")
    decision = registry.gate_and_promote(
        client, MODEL_NAME, version, metrics, settings.anomaly_gate,
        lambda v: evaluate(load_scorer(v), p), promote=promote,
    )  # fmt: skip
    return TrainResult(run.info.run_id, version, metrics, decision)
