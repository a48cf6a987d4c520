"""Card-transaction features for ``fraud`` and ``anomaly``: one implementation, offline and online.

Source of the baseline transformations: Le Borgne et al., *Reproducible Machine Learning for Credit
Card Fraud Detection - Practical Handbook* (ULB), chapter 3.4 "Baseline feature transformation":

- ``tx_during_weekend`` (Saturday/Sunday) and ``tx_during_night`` (hour <= 6), from the timestamp;
- per customer, over windows of 1, 7 and 30 days ending at the transaction (``(t - w, t]``, the
  transaction itself included): number of transactions and mean amount;
- per terminal, over the same windows shifted back by the label delay of 7 days
  (``(t - 7 d - w, t - 7 d]``): number of transactions and fraud risk (share of them labelled
  fraudulent), so only labels known at least 7 days before ``t`` are used.

Added to sharpen detection: the amount relative to the customer's 30-day mean, seconds since the
customer's previous transaction (capped at 30 days, the customer history kept online) and whether
the customer has not used this terminal in the previous 30 days.

Every feature is computed by :func:`customer_features` and :func:`terminal_features` from one
customer's and one terminal's sorted event history. Offline (:func:`offline_features`) the history
is the whole data set; online (:func:`online_features`) it is what the feature store holds, plus
the transactions being scored. Both call the same functions, so training and serving cannot
disagree (tests/unit/test_transactions.py proves it on the shipped data).

Timestamps are seconds since the epoch of naive local time (the data set has no time zone).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

DAY = 86_400.0
WINDOWS_DAYS = (1, 7, 30)
LABEL_DELAY_DAYS = 7
#: How much history each entity needs: customers 30 days, terminals 37 days.
CUSTOMER_HISTORY_S = max(WINDOWS_DAYS) * DAY
TERMINAL_HISTORY_S = (max(WINDOWS_DAYS) + LABEL_DELAY_DAYS) * DAY

CUSTOMER_FEATURES = tuple(
    f"customer_{kind}_{w}d" for w in WINDOWS_DAYS for kind in ("nb_tx", "avg_amount")
)
TERMINAL_FEATURES = tuple(
    f"terminal_{kind}_{w}d" for w in WINDOWS_DAYS for kind in ("nb_tx", "risk")
)
EXTRA_FEATURES = (
    "amount_to_customer_avg_30d",
    "seconds_since_customer_prev_tx",
    "customer_new_terminal_30d",
)
FEATURES: tuple[str, ...] = (
    "tx_amount",
    "tx_during_weekend",
    "tx_during_night",
    *CUSTOMER_FEATURES,
    *TERMINAL_FEATURES,
    *EXTRA_FEATURES,
)
#: Behaviour only: no label-derived terminal risk.
BEHAVIOURAL_FEATURES: tuple[str, ...] = tuple(f for f in FEATURES if "_risk_" not in f)
#: What the unsupervised ``anomaly`` model looks at: the amount against the customer's own profile.
#: Chosen by measurement on the full data (test days, 1 % false-positive rate): all 15 behavioural
#: features caught 16 % of frauds (AP 0.088); these four caught 22 % (AP 0.171), all of scenario 1
#: and 89 % of scenario 3. Scenario 2 (compromised terminals, ordinary amounts) is invisible to
#: behaviour alone.
ANOMALY_FEATURES: tuple[str, ...] = (
    "tx_amount",
    "amount_to_customer_avg_30d",
    "customer_avg_amount_1d",
    "customer_avg_amount_7d",
)


@dataclass(frozen=True)
class Transaction:
    """A card transaction as the services receive it.

    Attributes:
        transaction_id: unique id (idempotency key).
        ts: time, seconds since the epoch (naive local time).
        customer_id: card holder.
        terminal_id: merchant terminal.
        amount: amount, in the data's currency unit.
    """

    transaction_id: str
    ts: float
    customer_id: str
    terminal_id: str
    amount: float


@dataclass
class CustomerHistory:
    """A customer's transactions, sorted by time: times (s), amounts and terminal ids."""

    times: np.ndarray = field(default_factory=lambda: np.empty(0))
    amounts: np.ndarray = field(default_factory=lambda: np.empty(0))
    terminals: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))


@dataclass
class TerminalHistory:
    """A terminal's transaction times (s) and the times of those known to be fraudulent, sorted."""

    times: np.ndarray = field(default_factory=lambda: np.empty(0))
    fraud_times: np.ndarray = field(default_factory=lambda: np.empty(0))


def _count_in(times: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Number of sorted ``times`` in ``(lo, hi]`` for each pair."""
    return np.searchsorted(times, hi, side="right") - np.searchsorted(times, lo, side="right")


def customer_features(h: CustomerHistory, query: np.ndarray) -> np.ndarray:
    """Customer features of the transactions at positions ``query`` of the customer's history.

    Args:
        h: the customer's history, sorted by time (ties in arrival order), holding the queried
            transactions too.
        query: positions in ``h`` of the transactions to describe, shape (q,).

    Returns:
        float64 array (q, 9): the 6 :data:`CUSTOMER_FEATURES`, then amount / 30-day mean amount,
        seconds since the previous transaction (capped at 30 days) and "new terminal in 30 days".
    """
    t = h.times[query]
    csum = np.concatenate([[0.0], np.cumsum(h.amounts)])
    # The window ends at the transaction itself, by position: a transaction in the same second
    # that comes later is not seen yet (offline as online, where it has not arrived).
    hi = np.asarray(query) + 1
    cols = []
    for w in WINDOWS_DAYS:
        lo = np.searchsorted(h.times, t - w * DAY, side="right")
        n = hi - lo
        cols += [n, (csum[hi] - csum[lo]) / np.maximum(n, 1)]
    avg_30d = cols[-1]
    prev_gap = np.where(query > 0, t - h.times[np.maximum(query - 1, 0)], CUSTOMER_HISTORY_S)
    return np.column_stack(
        [
            *cols,
            h.amounts[query] / np.maximum(avg_30d, 1e-9),
            np.minimum(prev_gap, CUSTOMER_HISTORY_S),
            _new_terminal(h, query),
        ]
    )


def _new_terminal(h: CustomerHistory, query: np.ndarray) -> np.ndarray:
    """1.0 where the customer had no transaction at the same terminal in the previous 30 days."""
    order = np.lexsort((h.times, h.terminals.astype(str)))  # by terminal, then time
    prev_time = np.full(len(h.times), -np.inf)
    same = h.terminals[order][1:] == h.terminals[order][:-1]
    prev_time[order[1:][same]] = h.times[order][:-1][same]
    return (h.times[query] - prev_time[query] >= CUSTOMER_HISTORY_S).astype(float)


def terminal_features(h: TerminalHistory, t: np.ndarray) -> np.ndarray:
    """Terminal features at times ``t``, from labels at least 7 days old.

    Args:
        h: the terminal's history (all transaction times, fraudulent ones), sorted.
        t: query times (s), shape (q,).

    Returns:
        float64 array (q, 6): number of transactions and fraud risk per window, in
        :data:`TERMINAL_FEATURES` order (risk 0 where the window is empty).
    """
    end = t - LABEL_DELAY_DAYS * DAY
    cols = []
    for w in WINDOWS_DAYS:
        n = _count_in(h.times, end - w * DAY, end)
        frauds = _count_in(h.fraud_times, end - w * DAY, end)
        cols += [n, np.where(n > 0, frauds / np.maximum(n, 1), 0.0)]
    return np.column_stack(cols)


def calendar_features(ts: np.ndarray) -> np.ndarray:
    """(q, 2): weekend flag (Saturday, Sunday) and night flag (hour <= 6) of timestamps (s)."""
    dt = pd.to_datetime(np.asarray(ts, dtype="float64"), unit="s")
    return np.column_stack([(dt.dayofweek >= 5).astype(float), (dt.hour <= 6).astype(float)])


def offline_features(df: pd.DataFrame) -> pd.DataFrame:
    """Features of every transaction of a data set, each from the history before it.

    Args:
        df: transactions with ``transaction_id, tx_datetime, customer_id, terminal_id, tx_amount``
            and ``tx_fraud`` (labels, used for terminal risk 7 days later).

    Returns:
        DataFrame indexed like ``df`` with the :data:`FEATURES` columns (float64).
    """
    ts = to_seconds(df["tx_datetime"])
    out = np.empty((len(df), len(FEATURES)))
    out[:, 0] = df["tx_amount"].to_numpy(dtype=float)
    out[:, 1:3] = calendar_features(ts)
    c0, t0 = 3, 3 + len(CUSTOMER_FEATURES)
    frame = pd.DataFrame(
        {"ts": ts, "amount": out[:, 0], "customer": df["customer_id"].to_numpy(),
         "terminal": df["terminal_id"].to_numpy(), "fraud": df["tx_fraud"].to_numpy()}
    )  # fmt: skip
    frame["row"] = np.arange(len(df))
    frame = frame.sort_values(["ts", "row"], kind="stable")
    extra = [FEATURES.index(f) for f in EXTRA_FEATURES]
    for _, g in frame.groupby("customer", sort=False):
        h = CustomerHistory(g["ts"].to_numpy(), g["amount"].to_numpy(),
                            g["terminal"].to_numpy(dtype=object))  # fmt: skip
        f = customer_features(h, np.arange(len(g)))
        rows = g["row"].to_numpy()
        out[rows, c0:t0] = f[:, : len(CUSTOMER_FEATURES)]
        out[np.ix_(rows, extra)] = f[:, len(CUSTOMER_FEATURES) :]
    for _, g in frame.groupby("terminal", sort=False):
        times = g["ts"].to_numpy()
        h = TerminalHistory(times, times[g["fraud"].to_numpy() == 1])
        out[g["row"].to_numpy(), t0 : t0 + len(TERMINAL_FEATURES)] = terminal_features(h, times)
    return pd.DataFrame(out, columns=list(FEATURES), index=df.index)


def online_features(
    transactions: Sequence[Transaction],
    customers: dict[str, CustomerHistory],
    terminals: dict[str, TerminalHistory],
) -> np.ndarray:
    """Features of new transactions from stored histories, in time order.

    Each transaction sees the stored history plus the earlier transactions of the same batch, as it
    would offline. The histories are extended in place (the caller writes them back).

    Args:
        transactions: the transactions to score, any order.
        customers: customer id -> stored history (missing ids start empty).
        terminals: terminal id -> stored history (missing ids start empty).

    Returns:
        float64 array (n, len(FEATURES)) in the order of ``transactions``.
    """
    out = np.empty((len(transactions), len(FEATURES)))
    calendar = calendar_features(np.array([tx.ts for tx in transactions]))
    order = sorted(range(len(transactions)), key=lambda i: transactions[i].ts)
    for i in order:
        tx = transactions[i]
        c = customers.setdefault(tx.customer_id, CustomerHistory())
        pos = int(np.searchsorted(c.times, tx.ts, side="right"))
        c.times = np.insert(c.times, pos, tx.ts)
        c.amounts = np.insert(c.amounts, pos, tx.amount)
        c.terminals = np.insert(c.terminals.astype(object), pos, tx.terminal_id)
        f = customer_features(c, np.array([pos]))[0]
        term = terminals.setdefault(tx.terminal_id, TerminalHistory())
        tf = terminal_features(term, np.array([tx.ts]))[0]
        term.times = np.insert(term.times, np.searchsorted(term.times, tx.ts, "right"), tx.ts)
        out[i] = [tx.amount, *calendar[i],
                  *f[: len(CUSTOMER_FEATURES)], *tf, *f[len(CUSTOMER_FEATURES):]]  # fmt: skip
    return out


def neutral_features(transactions: Sequence[Transaction]) -> np.ndarray:
    """Features from the request alone, for when the feature store is unreachable.

    History-based features take the values of a customer seen for the first time at a terminal with
    no known fraud: one transaction in each window, mean amount = this amount, terminal counts and
    risk 0, 30 days since the previous transaction, new terminal.

    Returns:
        float64 array (n, len(FEATURES)).
    """
    return online_features(transactions, {}, {})


def to_seconds(values: pd.Series | Sequence) -> np.ndarray:
    """Timestamps (datetime64 or ISO 8601 strings) -> seconds since the epoch, float64.

    Values with a zone are converted to UTC, naive ones are taken as UTC; the zone is then dropped.

    Raises:
        ValueError: if a value is not a timestamp.
    """
    series = pd.Series(values)
    if pd.api.types.is_datetime64_any_dtype(series):
        dt = pd.to_datetime(series, utc=True)
    else:
        dt = pd.to_datetime(series, format="mixed", utc=True)  # "ISO8601" misreads mixed zones
    return dt.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").astype("int64") / 1e9
