"""Quality of fraud and anomaly on the shipped slice: test days after the delay, never training."""

import numpy as np
import pytest

from finbento.settings import ANOMALY_GATE, FRAUD_GATE, Settings
from trainers import anomaly, fraud
from trainers.gate import decide

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def prepared():
    return fraud.load_split(Settings())


def test_split_is_in_time_order_with_the_delay(prepared):
    day = prepared.split.day
    assert day[prepared.split.train].max() < day[prepared.split.validation].min()
    assert day[prepared.split.test].min() - day[prepared.split.validation].max() == 8  # 7-day gap
    assert prepared.split.calendar["test"].startswith("2018-08-18")


def test_fraud_beats_its_floors_on_the_test_days(prepared):
    scorer = fraud.fit(prepared, seed=42)
    metrics, per_day = fraud.evaluate(scorer, prepared)
    assert len(per_day) == 14
    assert metrics["roc_auc"] >= 0.80 and metrics["average_precision"] >= 0.38
    assert metrics["precision_at_threshold"] >= 0.5
    assert decide(metrics, None, FRAUD_GATE).promote


def test_anomaly_catches_amount_scenarios_at_one_percent(prepared):
    scorer = anomaly.fit(prepared, seed=42)
    metrics = anomaly.evaluate(scorer, prepared)
    assert metrics["flagged_rate"] < 0.02
    assert metrics["caught_scenario_1"] >= 0.9  # amount over 220
    assert metrics["caught_scenario_3"] >= 0.6  # compromised card, amounts x5
    assert metrics["detection_rate_at_1pct_fpr"] >= 0.12
    assert decide(metrics, None, ANOMALY_GATE).promote
    assert np.isfinite(scorer.threshold)
