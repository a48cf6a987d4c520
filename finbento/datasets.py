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


#: The categorizer's sources: folder names under ``Settings.categories_data_path``.
CATEGORY_SOURCES = ("household_transactions", "za_bank_transactions", "personal_transactions")
#: Columns every categorizer source loader returns.
CATEGORY_SOURCE_COLUMNS = ("source", "description", "amount", "source_label", "subcategory", "date")
_CATEGORY_FILES = {
    "household_transactions": "daily_household_transactions.csv",
    "za_bank_transactions": "transactions.csv",
    "personal_transactions": "personal_transactions.csv",
}


def load_household_transactions(path: Path) -> pd.DataFrame:
    """Load one Indian household's money log, 2015-2018 (Kaggle "Daily Household Transactions").

    Exact duplicate rows are dropped (9 in the shipped copy). Rows with an empty description
    (neither Subcategory nor Note) are kept; the trainer drops them.

    Args:
        path: CSV with ``Date, Mode, Category, Subcategory, Note, Amount, Income/Expense,
            Currency``; dates mix ``yyyy-mm-dd``, ``dd/mm/yyyy`` and ``dd/mm/yyyy HH:MM:SS``.

    Returns:
        DataFrame with :data:`CATEGORY_SOURCE_COLUMNS`: ``description`` is Subcategory and Note
        joined by a space; ``amount`` is in INR, negative for ``Expense`` and ``Transfer-Out``
        rows, positive for ``Income``; ``source_label`` is the Category of ``Expense`` rows and
        the type itself (``Income`` or ``Transfer-Out``) of the others, whose Category names the
        kind of income or the destination account (``Other``, ``Public Provident Fund`` and
        ``Recurring Deposit`` occur under several types); ``subcategory`` ("" if none) lets the
        category mapping refine a Category; ``date`` is datetime64.

    Raises:
        ValueError: if a required column is missing, a type is unknown or a date does not parse.
    """
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    _require(df, ("Date", "Category", "Subcategory", "Note", "Amount", "Income/Expense"), path)
    df = df.drop_duplicates().reset_index(drop=True)
    kind = df["Income/Expense"].str.strip()
    sign = kind.map({"Expense": -1.0, "Transfer-Out": -1.0, "Income": 1.0})
    if sign.isna().any():
        raise ValueError(f"{path}: unknown Income/Expense values {sorted(set(kind[sign.isna()]))}")
    date = df["Date"].str.strip()
    parsed = pd.to_datetime(date, format="%d/%m/%Y %H:%M:%S", errors="coerce")
    for fmt in ("%d/%m/%Y", "%Y-%m-%d"):
        parsed = parsed.fillna(pd.to_datetime(date, format=fmt, errors="coerce"))
    if parsed.isna().any():
        raise ValueError(f"{path}: unparsed dates {date[parsed.isna()].head(3).tolist()}")
    subcategory = df["Subcategory"].str.strip()
    return pd.DataFrame({
        "source": "household_transactions",
        "description": (subcategory + " " + df["Note"].str.strip()).str.strip(),
        "amount": sign * pd.to_numeric(df["Amount"]).abs(),
        "source_label": df["Category"].str.strip().where(kind == "Expense", kind),
        "subcategory": subcategory,
        "date": parsed,
    })  # fmt: skip


def load_za_bank_transactions(path: Path) -> pd.DataFrame:
    """Load raw South African bank statement lines, 2021-2023, in ZAR (YassirAwad, MIT).

    Args:
        path: CSV with ``description, amount, label, balance, date``; amounts are signed and may
            hold a space as thousands separator (``-1 300.00``) or a branch code run into them
            (``470010 -0.80``: the last token is the amount).

    Returns:
        DataFrame with :data:`CATEGORY_SOURCE_COLUMNS`: ``amount`` in ZAR (negative = money out),
        ``source_label`` the ``label``, ``subcategory`` "".

    Raises:
        ValueError: if a required column is missing or an amount does not parse.
    """
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    _require(df, ("description", "amount", "label", "date"), path)
    raw = df["amount"].str.strip()
    amount = pd.to_numeric(raw.str.replace(" ", "", regex=False), errors="coerce")
    amount = amount.fillna(pd.to_numeric(raw.str.split().str[-1], errors="coerce"))
    if amount.isna().any():
        raise ValueError(f"{path}: unparsed amounts {raw[amount.isna()].head(3).tolist()}")
    return pd.DataFrame({
        "source": "za_bank_transactions", "description": df["description"].str.strip(),
        "amount": amount, "source_label": df["label"].str.strip(), "subcategory": "",
        "date": pd.to_datetime(df["date"].str.strip(), format="ISO8601"),
    })  # fmt: skip


def load_personal_transactions(path: Path) -> pd.DataFrame:
    """Load personal transactions 2018-2019 in USD (a Mint-style export; few distinct descriptions).

    Args:
        path: CSV with ``Date`` (mm/dd/yyyy), ``Description``, ``Amount`` (positive),
            ``Transaction Type`` (``debit``/``credit``), ``Category``, ``Account Name``.

    Returns:
        DataFrame with :data:`CATEGORY_SOURCE_COLUMNS`: ``amount`` in USD, negative for debits;
        ``source_label`` the ``Category``; ``subcategory`` "".

    Raises:
        ValueError: if a required column is missing or a transaction type is unknown.
    """
    df = pd.read_csv(path, dtype={"Description": str, "Category": str})
    _require(df, ("Date", "Description", "Amount", "Transaction Type", "Category"), path)
    sign = df["Transaction Type"].str.strip().str.lower().map({"debit": -1.0, "credit": 1.0})
    if sign.isna().any():
        raise ValueError(f"{path}: unknown Transaction Type values")
    return pd.DataFrame({
        "source": "personal_transactions", "description": df["Description"].str.strip(),
        "amount": sign * df["Amount"].astype(float).abs(),
        "source_label": df["Category"].str.strip(), "subcategory": "",
        "date": pd.to_datetime(df["Date"], format="%m/%d/%Y"),
    })  # fmt: skip


def load_category_sources(folder: Path) -> pd.DataFrame:
    """All three categorizer sources, one row per transaction (see each loader).

    Args:
        folder: holds ``household_transactions/``, ``za_bank_transactions/`` and
            ``personal_transactions/`` (``Settings.categories_data_path``).

    Returns:
        DataFrame with :data:`CATEGORY_SOURCE_COLUMNS`, sources in :data:`CATEGORY_SOURCES` order.
    """
    loaders = {
        "household_transactions": load_household_transactions,
        "za_bank_transactions": load_za_bank_transactions,
        "personal_transactions": load_personal_transactions,
    }
    parts = [loaders[s](Path(folder) / s / _CATEGORY_FILES[s]) for s in CATEGORY_SOURCES]
    return pd.concat(parts, ignore_index=True)[list(CATEGORY_SOURCE_COLUMNS)]


def _require(df: pd.DataFrame, columns: tuple[str, ...], path: Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")


def load_santander_products(path: Path) -> pd.DataFrame:
    """Santander monthly product ownership (``products_sample.csv.gz``), one row per customer-month.

    Returns:
        DataFrame with ``month`` (Timestamp), ``customer_id`` (int) and the 24 ``ind_*_ult1``
        flags as 0/1 ints (the few missing payroll flags read 0).

    Raises:
        ValueError: if a column is missing.
    """
    from finbento.recommender import PRODUCT_CODES

    df = pd.read_csv(path)
    _require(df, ("fecha_dato", "ncodpers", *PRODUCT_CODES), path)
    out = pd.DataFrame({"month": pd.to_datetime(df["fecha_dato"]), "customer_id": df["ncodpers"]})
    flags = df[list(PRODUCT_CODES)].fillna(0).astype(int)
    return pd.concat([out, flags], axis=1)


def load_santander_interactions(path: Path) -> pd.DataFrame:
    """Santander first-ownership events (``interactions.csv.gz``), one row per customer-product.

    Returns:
        DataFrame with ``customer_id`` (int), ``product`` (code) and ``month`` (Timestamp, UTC
        date of the month the product was first held).

    Raises:
        ValueError: if a column is missing.
    """
    df = pd.read_csv(path)
    _require(df, ("USER_ID", "ITEM_ID", "TIMESTAMP"), path)
    return pd.DataFrame({
        "customer_id": df["USER_ID"], "product": df["ITEM_ID"],
        "month": pd.to_datetime(df["TIMESTAMP"], unit="s").dt.normalize(),
    })  # fmt: skip


def load_bank_marketing(path: Path) -> pd.DataFrame:
    """UCI bank marketing (``bank-additional-full.csv.gz``, ``;``-separated), one row per call.

    Returns:
        the data's columns, with the target ``y`` as 0/1 (1 = subscribed a term deposit).

    Raises:
        ValueError: if a column is missing.
    """
    df = pd.read_csv(path, sep=";")
    _require(df, ("age", "job", "marital", "education", "default", "housing", "loan",
                  "previous", "pdays", "poutcome", "euribor3m", "y"), path)  # fmt: skip
    return df.assign(y=(df["y"] == "yes").astype(int))
