"""Time-based splits and card precision for the transaction models (ULB handbook protocol).

Le Borgne et al., *Fraud detection handbook*, chapters 3.3 and 4.2: train on a window of days,
leave a delay of 7 days (labels of the most recent transactions are not known yet), test on the
days after. A card (customer) known to be compromised is no longer scored: for each test day,
cards with a fraud in the training window or labelled fraudulent at least ``delay`` days before that
day are removed from it. Card precision@k: per day, the share of the k cards with the highest
fraud score that really had a fraud that day; cards found that way are dropped from later days.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from finbento.features.transactions import LABEL_DELAY_DAYS


@dataclass(frozen=True)
class TimeSplit:
    """Boolean row masks of one time split (all of shape (n,)), and its calendar."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    day: np.ndarray
    calendar: dict[str, str]


def time_split(
    df: pd.DataFrame,
    train_days: int = 42,
    validation_days: int = 7,
    test_days: int = 14,
    delay_days: int = LABEL_DELAY_DAYS,
    test_end: str | None = None,
) -> TimeSplit:
    """Train | validation | delay | test, by whole days, ending at the data's last day.

    Args:
        df: transactions with ``tx_datetime``, ``customer_id`` and ``tx_fraud``.
        train_days: days of training data.
        validation_days: days after training, for early stopping and the decision threshold.
        test_days: days of test data (the last weeks of the data by default).
        delay_days: days between validation and test whose labels are not known yet.
        test_end: last test day (exclusive, ``YYYY-MM-DD``); default the day after the last one.

    Returns:
        the masks; ``test`` already excludes cards known to be compromised on each test day.
    """
    day = df["tx_datetime"].dt.floor("D")
    end = pd.Timestamp(test_end) if test_end else day.max() + pd.Timedelta(days=1)
    d = (day - end).dt.days.to_numpy()  # days relative to the end: test days are -test_days..-1
    test_start = -test_days
    val_start = test_start - delay_days - validation_days
    train_start = val_start - train_days
    fraud = df["tx_fraud"].to_numpy() == 1
    customer = df["customer_id"].to_numpy()
    test = (d >= test_start) & (d < 0)
    in_train = (d >= train_start) & (d < val_start)
    for t in range(test_start, 0):
        known = set(customer[fraud & (d >= train_start) & (d < t - delay_days)])
        today = d == t
        test[today] = ~np.isin(customer[today], list(known))
    calendar = {
        "train": f"{(end + pd.Timedelta(days=train_start)).date()}..{train_days}d",
        "validation": f"{(end + pd.Timedelta(days=val_start)).date()}..{validation_days}d",
        "delay": f"{delay_days}d",
        "test": f"{(end + pd.Timedelta(days=test_start)).date()}..{test_days}d",
    }
    validation = (d >= val_start) & (d < val_start + validation_days)
    return TimeSplit(in_train, validation, test, d, calendar)


def card_precision_at_k(
    day: np.ndarray, customer: np.ndarray, score: np.ndarray, label: np.ndarray, k: int = 100
) -> tuple[float, list[float]]:
    """Mean daily card precision@k and the value of each day (handbook definition).

    Args:
        day: day of each transaction, shape (n,).
        customer: card of each transaction.
        score: fraud score (higher = more suspicious).
        label: 1 if the transaction was fraudulent.
        k: cards an investigator can check per day.

    Returns:
        (mean over days, per-day values in day order).
    """
    frame = pd.DataFrame({"day": day, "card": customer, "score": score, "label": label})
    detected: set = set()
    per_day = []
    for _, g in frame.groupby("day", sort=True):
        g = g[~g["card"].isin(detected)]
        top = g.groupby("card").agg(score=("score", "max"), label=("label", "max"))
        top = top.nlargest(k, "score")
        per_day.append(float(top["label"].sum() / k))
        detected |= set(top.index[top["label"] == 1])
    return float(np.mean(per_day)), per_day
