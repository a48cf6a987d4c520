import numpy as np
import pandas as pd
import pytest

from finbento.features.transactions import (
    BEHAVIOURAL_FEATURES,
    CUSTOMER_HISTORY_S,
    FEATURES,
    TERMINAL_HISTORY_S,
    CustomerHistory,
    TerminalHistory,
    Transaction,
    neutral_features,
    offline_features,
    online_features,
    to_seconds,
)
from tests.conftest import ROOT

SLICE = ROOT / "data" / "card_transactions_sim" / "transactions_1000_customers.parquet"


@pytest.fixture(scope="module")
def data():
    df = pd.read_parquet(SLICE).rename(columns=str.lower)
    df = df[df["tx_datetime"] < "2018-07-10"].reset_index(drop=True)
    return df, offline_features(df)


def histories_before(df: pd.DataFrame, cutoff: float):
    """What a feature store holds at ``cutoff``: 30 days per customer, 37 per terminal, labels."""
    ts = to_seconds(df["tx_datetime"])
    customers, terminals = {}, {}
    past = df[(ts < cutoff) & (ts >= cutoff - TERMINAL_HISTORY_S)].assign(
        ts=ts[ts < cutoff][(ts[ts < cutoff] >= cutoff - TERMINAL_HISTORY_S)]
    )
    for cid, g in past[past.ts >= cutoff - CUSTOMER_HISTORY_S].groupby("customer_id"):
        g = g.sort_values("ts")
        customers[str(cid)] = CustomerHistory(
            g.ts.to_numpy(),
            g.tx_amount.to_numpy(),
            g.terminal_id.astype(str).to_numpy(dtype=object),
        )
    for tid, g in past.groupby("terminal_id"):
        g = g.sort_values("ts")
        terminals[str(tid)] = TerminalHistory(g.ts.to_numpy(), g.ts[g.tx_fraud == 1].to_numpy())
    return customers, terminals


def as_transactions(rows: pd.DataFrame) -> list[Transaction]:
    return [
        Transaction(
            str(r.transaction_id),
            float(s),
            str(r.customer_id),
            str(r.terminal_id),
            float(r.tx_amount),
        )
        for r, s in zip(rows.itertuples(), to_seconds(rows["tx_datetime"]), strict=True)
    ]


def test_online_features_equal_offline_features_on_the_same_history(data):
    df, offline = data
    cutoff = to_seconds(pd.Series([pd.Timestamp("2018-07-05")]))[0]
    customers, terminals = histories_before(df, cutoff)
    ts = to_seconds(df["tx_datetime"])
    new = df[(ts >= cutoff) & (ts < cutoff + 2 * 86400)]
    assert len(new) > 2000
    # score in shuffled batches of 250: within a batch time order must still be honoured
    batches = np.array_split(new.index.to_numpy(), len(new) // 250)
    for idx in batches:
        shuffled = np.random.default_rng(0).permutation(idx)
        online = online_features(as_transactions(df.loc[shuffled]), customers, terminals)
        np.testing.assert_allclose(online, offline.loc[shuffled].to_numpy(), rtol=1e-9, atol=1e-9)


def test_features_sharpen_on_known_fraud_patterns(data):
    df, f = data
    fraud = df["tx_fraud"] == 1
    # scenario 2 (compromised terminals): terminal risk is high only with labels at least 7 days old
    s2 = df["tx_fraud_scenario"] == 2
    assert f.loc[s2, "terminal_risk_30d"].mean() > 10 * f.loc[~fraud, "terminal_risk_30d"].mean()
    # scenario 3 (compromised cards, amounts x5): amount well above the customer's own profile
    s3 = df["tx_fraud_scenario"] == 3
    assert f.loc[s3, "amount_to_customer_avg_30d"].median() > 2.5
    assert f.loc[~fraud, "amount_to_customer_avg_30d"].median() < 1.2


def test_first_transaction_and_neutral_values():
    tx = Transaction("t1", to_seconds(["2018-04-07T03:00:00"])[0], "c1", "k1", 120.0)
    f = dict(zip(FEATURES, neutral_features([tx])[0], strict=True))
    assert f["tx_during_weekend"] == 1 and f["tx_during_night"] == 1  # Saturday 03:00
    assert f["customer_nb_tx_30d"] == 1 and f["customer_avg_amount_30d"] == 120.0
    assert f["terminal_nb_tx_30d"] == 0 and f["terminal_risk_30d"] == 0
    assert f["seconds_since_customer_prev_tx"] == CUSTOMER_HISTORY_S
    assert f["customer_new_terminal_30d"] == 1 and f["amount_to_customer_avg_30d"] == 1


def test_behavioural_features_carry_no_labels():
    from finbento.features.transactions import ANOMALY_FEATURES

    assert not any("risk" in f for f in BEHAVIOURAL_FEATURES)
    assert set(ANOMALY_FEATURES) <= set(BEHAVIOURAL_FEATURES)
    assert len(BEHAVIOURAL_FEATURES) == len(FEATURES) - 3


def test_iso_timestamps_with_zones_become_utc():
    a, b = to_seconds(["2018-08-01T12:00:00+02:00", "2018-08-01T10:00:00"])
    assert a == b


def test_same_second_transactions_count_in_arrival_order():
    t = to_seconds(["2018-06-04T12:12:48"])[0]
    txs = [Transaction("a", t, "c", "k1", 10.0), Transaction("b", t, "c", "k2", 30.0)]
    when = pd.to_datetime([t, t], unit="s")
    df = pd.DataFrame({"transaction_id": ["a", "b"], "tx_datetime": when,
                       "customer_id": ["c", "c"], "terminal_id": ["k1", "k2"],
                       "tx_amount": [10.0, 30.0], "tx_fraud": [0, 0]})  # fmt: skip
    offline = offline_features(df).to_numpy()
    online = online_features(txs, {}, {})
    np.testing.assert_allclose(online, offline)
    n1d = FEATURES.index("customer_nb_tx_1d")
    assert offline[:, n1d].tolist() == [1, 2]
