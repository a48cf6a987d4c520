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


TRANSACTION_COLUMNS = ("transaction_id", "tx_datetime", "customer_id", "terminal_id", "tx_amount")


def load_transactions(path: Path) -> pd.DataFrame:
    """Load card transactions (the ULB handbook's simulated data, or data of the same shape).

    Args:
        path: parquet or CSV with ``TRANSACTION_ID, TX_DATETIME, CUSTOMER_ID, TERMINAL_ID,
            TX_AMOUNT`` and, for training, ``TX_FRAUD`` (0/1) and optionally ``TX_FRAUD_SCENARIO``
            (any case).

    Returns:
        DataFrame sorted by time, lower-case columns, ``tx_datetime`` as datetime64, ids as str.

    Raises:
        ValueError: if a required column is missing.
    """
    df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    df.columns = [c.lower() for c in df.columns]
    missing = [c for c in TRANSACTION_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    df["tx_datetime"] = pd.to_datetime(df["tx_datetime"])
    for c in ("transaction_id", "customer_id", "terminal_id"):
        df[c] = df[c].astype(str)
    return df.sort_values(["tx_datetime", "transaction_id"], kind="stable").reset_index(drop=True)


def to_transactions(df: pd.DataFrame) -> list:
    """Rows of :func:`load_transactions` -> ``Transaction`` objects, in the same order."""
    from finbento.features.transactions import Transaction, to_seconds

    ts = to_seconds(df["tx_datetime"])
    return [
        Transaction(txid, float(t), cid, tid, float(amount))
        for txid, t, cid, tid, amount in zip(
            df["transaction_id"],
            ts,
            df["customer_id"],
            df["terminal_id"],
            df["tx_amount"],
            strict=True,
        )
    ]
