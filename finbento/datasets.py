"""Loaders for the real data sets finbento trains on (sources and licences: data/README.md)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from finbento.features.credit_risk import RAW_COLUMNS, TARGET


def load_taiwan_credit(path: Path) -> pd.DataFrame:
    """Load the Taiwan default-of-credit-card-clients CSV (UCI, Yeh & Lien 2009).

    Args:
        path: CSV with the UCI column names (``LIMIT_BAL`` ... ``default.payment.next.month``).

    Returns:
        DataFrame of shape (n, 24): the 23 ``RAW_COLUMNS`` in snake_case (float64) and ``TARGET``
        (int, 1 = defaulted next month).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if a column is missing or the target is not 0/1.

    """
    df = pd.read_csv(path)
    df.columns = [c.lower().replace(".", "_") for c in df.columns]
    missing = [c for c in (*RAW_COLUMNS, TARGET) if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    if not df[TARGET].isin([0, 1]).all():
        raise ValueError(f"{path}: {TARGET} must be 0 or 1")
    out = df[list(RAW_COLUMNS)].astype("float64")
    out[TARGET] = df[TARGET].astype(int)
    return out
