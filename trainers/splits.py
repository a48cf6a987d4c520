"""Reproducible train/validation/test splits."""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd
from sklearn.model_selection import train_test_split


class Split(NamedTuple):
    """Three disjoint parts of one data set."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame


def stratified_split(
    df: pd.DataFrame, target: str, seed: int, validation: float = 0.2, test: float = 0.2
) -> Split:
    """Split ``df`` into train/validation/test, each with the target's class shares.

    Args:
        df: the data, one row per example.
        target: name of the label column to stratify on.
        seed: random seed; the same data and seed give the same split.
        validation: share of all rows for validation (early stopping, calibration).
        test: share of all rows held out for the reported metrics and the promotion gate.

    Returns:
        a :class:`Split` (default 60/20/20).

    """
    rest, test_df = train_test_split(df, test_size=test, stratify=df[target], random_state=seed)
    train_df, val_df = train_test_split(
        rest, test_size=validation / (1 - test), stratify=rest[target], random_state=seed
    )
    return Split(train_df, val_df, test_df)


def stratified_sample(df: pd.DataFrame, target: str, n: int, seed: int) -> pd.DataFrame:
    """A sample of ``n`` rows with the target's class shares (whole ``df`` if n >= len(df))."""
    if n >= len(df):
        return df
    sample, _ = train_test_split(df, train_size=n, stratify=df[target], random_state=seed)
    return sample
