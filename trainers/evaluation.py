"""Evaluation of classifiers: metrics, fairness and plots, shared by every trainer."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from fairlearn.metrics import (
    demographic_parity_ratio,
    equalized_odds_difference,
)
from scipy.stats import ks_2samp
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    f1_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)


def binary_metrics(y_true: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """Ranking and calibration metrics of predicted probabilities.

    Args:
        y_true: 0/1 labels, shape (n,).
        probability: predicted probability of class 1, shape (n,).

    Returns:
        ``roc_auc``, ``average_precision``, ``brier_score`` (mean squared error of the
        probability) and ``ks_statistic`` (largest gap between the score distributions of the two
        classes, two-sample Kolmogorov-Smirnov), plus ``positive_rate`` and ``n``.

    """
    y_true = np.asarray(y_true)
    probability = np.asarray(probability)
    return {
        "roc_auc": float(roc_auc_score(y_true, probability)),
        "average_precision": float(average_precision_score(y_true, probability)),
        "brier_score": float(brier_score_loss(y_true, probability)),
        "ks_statistic": float(
            ks_2samp(probability[y_true == 1], probability[y_true == 0]).statistic
        ),
        "positive_rate": float(y_true.mean()),
        "n": float(len(y_true)),
    }


def fairness_metrics(
    y_true: np.ndarray, decision: np.ndarray, groups: Mapping[str, np.ndarray]
) -> dict[str, float]:
    """Fairness of a 0/1 decision across groups (fairlearn).

    Args:
        y_true: 0/1 labels, shape (n,).
        decision: 0/1 decision (1 = adverse, e.g. the high risk band), shape (n,).
        groups: sensitive attribute name -> group of each row, shape (n,).

    Returns:
        ``demographic_parity_ratio__<attr>`` (min/max selection rate, 1 = parity) and
        ``equalized_odds_difference__<attr>`` (max TPR/FPR gap, 0 = equal) for each attribute.

    """
    out: dict[str, float] = {}
    for attr, g in groups.items():
        out[f"demographic_parity_ratio__{attr}"] = float(
            demographic_parity_ratio(y_true, decision, sensitive_features=g)
        )
        out[f"equalized_odds_difference__{attr}"] = float(
            equalized_odds_difference(y_true, decision, sensitive_features=g)
        )
    return out


def evaluation_plots(y_true: np.ndarray, probability: np.ndarray) -> dict[str, plt.Figure]:
    """ROC, precision-recall and calibration (reliability) curves.

    Returns:
        file name -> matplotlib figure (``roc_curve.png``, ``pr_curve.png``,
        ``calibration_curve.png``); the caller logs and closes them.

    """
    figs: dict[str, plt.Figure] = {}
    fig, ax = plt.subplots(figsize=(5, 5))
    fpr, tpr, _ = roc_curve(y_true, probability)
    ax.plot(fpr, tpr, label=f"ROC AUC {roc_auc_score(y_true, probability):.3f}")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(xlabel="False positive rate", ylabel="True positive rate", title="ROC curve")
    ax.legend(loc="lower right")
    figs["roc_curve.png"] = fig

    fig, ax = plt.subplots(figsize=(5, 5))
    precision, recall, _ = precision_recall_curve(y_true, probability)
    ax.plot(recall, precision, label=f"AP {average_precision_score(y_true, probability):.3f}")
    ax.axhline(np.mean(y_true), color="k", ls="--", lw=0.8, label="base rate")
    ax.set(xlabel="Recall", ylabel="Precision", title="Precision-recall curve")
    ax.legend(loc="upper right")
    figs["pr_curve.png"] = fig

    fig, ax = plt.subplots(figsize=(5, 5))
    observed, predicted = calibration_curve(y_true, probability, n_bins=10, strategy="quantile")
    ax.plot(predicted, observed, "o-", label="model")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect")
    ax.set(xlabel="Predicted probability", ylabel="Observed rate", title="Calibration curve")
    ax.legend(loc="upper left")
    figs["calibration_curve.png"] = fig
    return figs


def importance_plot(importance: Mapping[str, float], title: str) -> plt.Figure:
    """Horizontal bar chart of feature importances (largest on top)."""
    items = sorted(importance.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(6, max(3, 0.25 * len(items))))
    ax.barh([k for k, _ in items], [v for _, v in items])
    ax.set(title=title, xlabel="importance")
    fig.tight_layout()
    return fig


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Multi-class metrics of predicted labels.

    Returns:
        ``macro_f1`` (unweighted mean F1 over the categories present in ``y_true``),
        ``weighted_f1``, ``accuracy`` and ``n``.
    """
    labels = sorted(set(y_true))
    return {
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro",
                                   zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted",
                                      zero_division=0)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "n": float(len(y_true)),
    }  # fmt: skip


def mase_scale(y_train: np.ndarray, season: int = 12) -> float:
    """In-sample MAE of the seasonal naive forecast: the denominator of MASE.

    Hyndman & Koehler (2006), "Another look at measures of forecast accuracy", IJF 22(4): the
    scale is the mean absolute ``season``-step difference of the training series; with fewer than
    two seasons of history it falls back to the one-step (naive, m = 1) difference.

    Args:
        y_train: training values, oldest first, shape (n,), n >= 2.
        season: seasonal period (12 for months).

    Returns:
        the scale (same unit as ``y_train``); NaN if ``n < 2``.
    """
    y = np.asarray(y_train, dtype=float)
    m = season if len(y) >= 2 * season else 1
    return float(np.mean(np.abs(y[m:] - y[:-m]))) if len(y) > m else float("nan")


def forecast_metrics(
    actual: np.ndarray,
    yhat: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    scale: np.ndarray | float,
) -> dict[str, float]:
    """Point and interval accuracy of forecasts.

    Args:
        actual: outcomes, shape (n,).
        yhat: point forecasts, shape (n,).
        lower: lower interval bounds, shape (n,).
        upper: upper interval bounds, shape (n,).
        scale: MASE denominator of each forecast's training series (:func:`mase_scale`), scalar
            or shape (n,).

    Returns:
        ``mase`` (mean |error| / scale; Hyndman & Koehler 2006; < 1 beats the in-sample
        seasonal naive), ``smape`` (mean 200 |error| / (|actual| + |yhat|), percent, 0 when both
        are 0), ``coverage`` (share of outcomes inside [lower, upper]) and ``n``.
    """
    a, f = np.asarray(actual, dtype=float), np.asarray(yhat, dtype=float)
    error = np.abs(a - f)
    denominator = np.abs(a) + np.abs(f)
    smape = np.divide(200 * error, denominator, out=np.zeros_like(error), where=denominator > 0)
    inside = (np.asarray(lower) <= a) & (a <= np.asarray(upper))
    return {
        "mase": float(np.mean(error / np.asarray(scale, dtype=float))),
        "smape": float(np.mean(smape)),
        "coverage": float(np.mean(inside)),
        "n": float(len(a)),
    }


def ranking_metrics(
    scores: np.ndarray, relevant: np.ndarray, k: int = 3, map_k: int = 7
) -> dict[str, float]:
    """Top-k metrics of recommendations: hit rate, recall and MAP (Kaggle's MAP@7 by default).

    Args:
        scores: (m, n) scores of n items for m users; -inf marks items that may not be
            recommended (held, ineligible). Ties rank in item order.
        relevant: (m, n) 0/1: the held-out items of each user (each row at least one).
        k: cut-off of ``hit_at_<k>`` and ``recall_at_<k>``.
        map_k: cut-off of ``map_at_<map_k>``.

    Returns:
        ``hit_at_<k>`` (share of users with a held-out item in their top k), ``recall_at_<k>``
        (mean share of a user's held-out items in the top k), ``map_at_<map_k>`` (mean over users
        of AP@map_k = sum of precision@i at each hit i <= map_k, over min(held-out, map_k); the
        Santander competition's metric) and ``n`` (users). With one held-out item per user,
        recall@k equals hit@k and AP is 1 / rank.

    Raises:
        ValueError: if shapes differ or a row has no held-out item.
    """
    s, rel = np.asarray(scores, dtype=np.float64), np.asarray(relevant) > 0
    if s.shape != rel.shape or not rel.any(axis=1).all():
        raise ValueError("scores and relevant must have one shape, every row a held-out item")
    top = np.argsort(-s, axis=1, kind="stable")[:, : max(k, map_k)]
    top_finite = np.take_along_axis(np.isfinite(s), top, axis=1)
    hits = np.take_along_axis(rel, top, axis=1) & top_finite
    n_rel = rel.sum(axis=1)
    ranks = np.arange(1, hits.shape[1] + 1)
    precision = np.cumsum(hits[:, :map_k], axis=1) / ranks[:map_k]
    ap = (precision * hits[:, :map_k]).sum(axis=1) / np.minimum(n_rel, map_k)
    return {
        f"hit_at_{k}": float(hits[:, :k].any(axis=1).mean()),
        f"recall_at_{k}": float((hits[:, :k].sum(axis=1) / n_rel).mean()),
        f"map_at_{map_k}": float(ap.mean()),
        "n": float(len(s)),
    }
