"""The challenger-vs-champion significance test (paired, stratified bootstrap) and its inputs."""

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from monitoring.challenger import (
    ChallengerComparison,
    _Ranked,
    _row_counts,
    compare,
    paired_predictions,
)

DATA = Path(__file__).resolve().parents[2] / "data/card_transactions_sim"
METRICS = (("average_precision", average_precision_score), ("roc_auc", roc_auc_score))


def synthetic(n=4000, rate=0.05, seed=1, champion_noise=1.0, challenger_noise=0.6):
    """Labels and two models' scores = label + noise; the challenger has less noise."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < rate
    return (y, y + rng.normal(0, champion_noise, n), y + rng.normal(0, challenger_noise, n))


@pytest.mark.parametrize("metric", ["average_precision", "roc_auc"])
def test_a_clearly_better_challenger_is_significant(metric):
    y, champion, challenger = synthetic()
    r = compare(y, champion, challenger, metric=metric, n_boot=1000)
    assert r.better == "challenger" and r.significant
    assert r.difference > 0 and 0 < r.ci_low <= r.difference <= r.ci_high
    assert r.p_value < 0.01
    assert r.n == 4000 and r.n_positive == int(y.sum()) and r.metric == metric
    score = dict(METRICS)[metric]
    assert r.champion == pytest.approx(score(y, champion))
    assert r.challenger == pytest.approx(score(y, challenger))


def test_identical_scores_make_no_difference():
    y, champion, _ = synthetic(n=1000)
    r = compare(y, champion, champion.copy(), n_boot=200)
    assert r.difference == 0 and r.ci_low == 0 and r.ci_high == 0
    assert r.p_value == 1 and not r.significant and r.better == "no difference"


def test_a_worse_challenger_is_not_significant():
    y, champion, challenger = synthetic()
    r = compare(y, challenger, champion, n_boot=1000)  # swapped: the champion is the better one
    assert r.difference < 0 and r.ci_high < 0
    assert not r.significant and r.better == "champion" and r.p_value < 0.05


def test_a_small_difference_is_not_significant():
    y, champion, challenger = synthetic(n=500, champion_noise=1.0, challenger_noise=0.98)
    r = compare(y, champion, challenger, n_boot=500)
    assert r.ci_low < 0 < r.ci_high
    assert not r.significant and r.better == "no difference" and r.p_value > 0.05


def test_the_result_is_reproducible_and_serializable():
    y, champion, challenger = synthetic(n=800)
    r = compare(y, champion, challenger, n_boot=300, seed=7)
    assert compare(y, champion, challenger, n_boot=300, seed=7) == r
    assert compare(y, champion, challenger, n_boot=300, seed=8).ci_low != r.ci_low
    d = json.loads(json.dumps(r.to_dict()))
    assert d == r.to_dict() and ChallengerComparison(**d) == r
    assert set(d) >= {"metric", "n", "n_positive", "champion", "challenger", "difference",
                      "ci_low", "ci_high", "p_value", "significant", "better"}  # fmt: skip


def test_invalid_inputs_raise():
    y, a, b = synthetic(n=200)
    few = np.zeros(200, dtype=bool)
    few[0] = True
    with pytest.raises(ValueError, match=r"at least 2 positives and 2 negatives.*1 positive"):
        compare(few, a, b)
    with pytest.raises(ValueError, match="at least 2 positives and 2 negatives"):
        compare(~few, a, b)  # 1 negative
    with pytest.raises(ValueError, match="lengths differ"):
        compare(y, a, b[:-1])
    with pytest.raises(ValueError, match="0/1"):
        compare(np.where(y, 2, 0), a, b)
    with pytest.raises(ValueError, match="finite"):
        compare(y, np.r_[a[:-1], np.nan], b)
    with pytest.raises(ValueError, match="metric"):
        compare(y, a, b, metric="accuracy")
    with pytest.raises(ValueError, match="n_boot"):
        compare(y, a, b, n_boot=0)
    with pytest.raises(ValueError, match="alpha"):
        compare(y, a, b, alpha=1.5)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize(("metric", "score"), METRICS)
def test_resampled_metrics_equal_sklearn_on_the_resampled_data(metric, score, ties):
    rng = np.random.default_rng(3)
    y = rng.random(400) < 0.1
    s = rng.random(400)
    if ties:
        s = np.round(s * 8) / 8  # ties within positives, within negatives and across
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    pos_draws = rng.integers(0, len(pos), size=(5, len(pos)))
    neg_draws = rng.integers(0, len(neg), size=(5, len(neg)))
    got = _Ranked(s, y).metric(_row_counts(pos_draws, len(pos)), neg_draws, metric)
    want = [score(y[np.r_[pos[p], neg[q]]], s[np.r_[pos[p], neg[q]]])
            for p, q in zip(pos_draws, neg_draws, strict=True)]  # fmt: skip
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_two_thousand_resamples_of_twenty_thousand_take_seconds():
    y, champion, challenger = synthetic(n=20_000, rate=0.02)
    start = time.perf_counter()
    r = compare(y, champion, challenger, n_boot=2000)
    assert time.perf_counter() - start < 5
    assert r.significant


def log_frame(rows):
    """Rows (version, transaction id, probability, ts seconds) as PredictionLog.read returns."""
    df = pd.DataFrame(rows, columns=["model_version", "prediction.transaction_id",
                                     "prediction.fraud_probability", "ts"])  # fmt: skip
    df.insert(0, "tx_amount", 10.0)
    df["prediction.degraded"] = False
    df["latency_ms"] = 1.0
    df["ts"] = pd.to_datetime(df["ts"], unit="s", utc=True)
    return df


def test_paired_predictions_joins_on_the_transaction_id():
    df = log_frame([
        ("3", "a", 0.1, 1), ("4", "a", 0.2, 1),
        ("3", "b", 0.3, 2), ("4", "b", 0.35, 9), ("4", "b", 0.4, 3),  # retry: newest ts wins
        ("3", "c", 0.5, 4), ("3", "c", 0.6, 5),  # only the champion scored c
        ("4", "d", 0.7, 6),  # only the challenger scored d
        ("5", "a", 0.9, 7),  # another version
        ("3", None, 0.8, 8),  # no id
    ])  # fmt: skip
    pairs = paired_predictions(df, champion_version=3, challenger_version="4")
    assert pairs.index.name == "transaction_id" and list(pairs.columns) == [
        "champion",
        "challenger",
    ]
    assert pairs.to_dict("index") == {
        "a": {"champion": 0.1, "challenger": 0.2},
        "b": {"champion": 0.3, "challenger": 0.35},
    }
    assert list(pairs.index) == ["a", "b"]
    no_ts = df.drop(columns="ts")  # by row order: the last row wins
    assert paired_predictions(no_ts, "3", "4").loc["b", "challenger"] == 0.4


def test_paired_predictions_errors():
    df = log_frame([("3", "a", 0.1, 1)])
    with pytest.raises(ValueError, match="same version"):
        paired_predictions(df, "3", 3)
    with pytest.raises(ValueError, match=r"prediction\.transaction_id"):
        paired_predictions(df.drop(columns="prediction.transaction_id"), "3", "4")
    assert paired_predictions(df, "3", "4").empty


@pytest.mark.model
def test_on_the_shipped_card_transactions():
    """The handbook's amount rule vs the same rule plus 7-day terminal risk (its scenario 2)."""
    from finbento.datasets import load_transactions
    from finbento.features.transactions import offline_features

    df = load_transactions(DATA / "transactions_1000_customers.parquet")
    df = df[df.tx_datetime >= "2018-07-01"].reset_index(drop=True)
    features = offline_features(df).tail(20_000)
    y = df.tx_fraud.to_numpy()[features.index]
    rule = (features.tx_amount.to_numpy() > 220).astype(float)
    r = compare(y, rule, rule + features.terminal_risk_7d.to_numpy())
    assert r.n == 20_000 and r.n_positive > 100
    assert r.better == "challenger" and r.significant and r.ci_low > 0
    assert compare(y, rule, rule, n_boot=200).better == "no difference"
