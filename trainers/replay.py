"""Replay a transactions file through the online feature code, as the services would see it.

Transactions are fed in time order, one day at a time, to
:func:`finbento.features.transactions.online_features` with in-memory histories (what the Redis
feature store holds, without Redis). Confirmed labels are fed back at the end of each day, as
``POST /feedback/fraud`` would; the features only use them once they are 7 days old. The result
must equal :func:`~finbento.features.transactions.offline_features` row for row, which
``finbento evaluate`` checks on every run.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from finbento.datasets import to_transactions
from finbento.features.transactions import (
    FEATURES,
    CustomerHistory,
    TerminalHistory,
    online_features,
)


def replay_features(
    df: pd.DataFrame, on_day: Callable[[int, int], None] = lambda done, total: None
) -> pd.DataFrame:
    """Online features of every transaction of ``df``.

    Args:
        df: transactions (finbento.datasets.load_transactions), with ``tx_fraud`` labels.
        on_day: progress callback (days done, days in all).

    Returns:
        DataFrame indexed like ``df`` with the FEATURES columns.
    """
    customers: dict[str, CustomerHistory] = {}
    terminals: dict[str, TerminalHistory] = {}
    out = np.empty((len(df), len(FEATURES)))
    days = df["tx_datetime"].dt.floor("D")
    groups = list(df.groupby(days, sort=True))
    for n, (_, day) in enumerate(groups):
        txs = to_transactions(day)
        out[df.index.get_indexer(day.index)] = online_features(txs, customers, terminals)
        for tx, fraud in zip(txs, day["tx_fraud"].to_numpy(), strict=True):
            if fraud:
                h = terminals[tx.terminal_id]
                h.fraud_times = np.insert(h.fraud_times, np.searchsorted(h.fraud_times, tx.ts),
                                          tx.ts)  # fmt: skip
        on_day(n + 1, len(groups))
    return pd.DataFrame(out, columns=list(FEATURES), index=df.index)
