import numpy as np
import pandas as pd

from trainers.time_split import card_precision_at_k, time_split


def test_card_precision_drops_cards_found_on_earlier_days():
    day = np.array([0, 0, 0, 1, 1, 1])
    card = np.array(["a", "b", "c", "a", "b", "c"])
    score = np.array([0.9, 0.8, 0.1, 0.9, 0.7, 0.6])
    label = np.array([1, 0, 0, 1, 0, 1])
    mean, per_day = card_precision_at_k(day, card, score, label, k=2)
    # day 0: top-2 {a, b}, a is fraud -> 0.5; day 1: a already found, top-2 {b, c}, c -> 0.5
    assert per_day == [0.5, 0.5] and mean == 0.5


def test_known_compromised_cards_leave_the_test_days_after_the_delay():
    days = pd.date_range("2018-08-01", periods=30, freq="D")
    df = pd.DataFrame({"tx_datetime": np.repeat(days, 2), "customer_id": ["x", "y"] * 30,
                       "tx_fraud": 0})  # fmt: skip
    df.loc[(df.customer_id == "x") & (df.tx_datetime == "2018-08-02"), "tx_fraud"] = 1
    s = time_split(df, train_days=5, validation_days=3, test_days=14, delay_days=7)
    assert s.train.sum() == 10 and s.validation.sum() == 6
    test_x = (df.customer_id == "x").to_numpy() & s.test
    assert test_x.sum() == 0  # x's fraud was in training: known on every test day
    assert ((df.customer_id == "y").to_numpy() & s.test).sum() == 14
