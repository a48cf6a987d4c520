"""spending: monthly aggregation, forecast metrics, fallbacks and the stored configuration."""

import numpy as np
import pandas as pd
import pytest

from finbento.spending import (
    TOTAL,
    SpendingConfig,
    SpendingForecaster,
    forecast_series,
    monthly_series,
    seasonal_naive,
)
from trainers.evaluation import forecast_metrics, mase_scale


def _log(rows):
    return pd.DataFrame(rows, columns=["date", "amount", "category"])


def test_monthly_series_sums_zero_fills_and_drops_duplicates_and_money_in():
    log = _log([
        ("2024-01-03", -100.0, "Groceries"), ("2024-01-03", -100.0, "Groceries"),  # duplicate
        ("2024-01-20", -50.0, "Transport"), ("2024-01-21", 900.0, "Income"),
        ("2024-01-22", 30.0, "Groceries"),  # refund: money in, not spending
        ("2024-03-05", -20.0, "Groceries"),
    ])  # fmt: skip
    table = monthly_series(log)
    assert list(table.index.strftime("%Y-%m")) == ["2024-01", "2024-02", "2024-03"]
    assert list(table.columns) == ["Groceries", "Transport", TOTAL]
    assert table.loc["2024-01-01"].tolist() == [100.0, 50.0, 150.0]
    assert table.loc["2024-02-01"].tolist() == [0.0, 0.0, 0.0]
    assert table[TOTAL].tolist() == [150.0, 0.0, 20.0]


def test_monthly_series_refuses_missing_columns():
    with pytest.raises(ValueError, match="category"):
        monthly_series(pd.DataFrame({"date": ["2024-01-01"], "amount": [-1.0]}))


def test_forecast_metrics_on_hand_made_numbers():
    y_train = np.array([1.0, 3.0, 2.0, 6.0])  # naive (m=1) differences 2, 1, 4 -> scale 7/3
    assert mase_scale(y_train) == pytest.approx(7 / 3)
    seasonal = np.arange(24.0)  # 12-step differences all 12
    assert mase_scale(seasonal) == pytest.approx(12.0)
    m = forecast_metrics(
        actual=np.array([10.0, 0.0, 4.0]), yhat=np.array([8.0, 0.0, 6.0]),
        lower=np.array([9.0, 0.0, 1.0]), upper=np.array([12.0, 1.0, 3.0]), scale=2.0,
    )  # fmt: skip
    assert m["mase"] == pytest.approx((2 / 2 + 0 + 2 / 2) / 3)
    # sMAPE: 200*2/18, 0 (0/0 counts as 0), 200*2/10
    assert m["smape"] == pytest.approx((400 / 18 + 0 + 40) / 3)
    assert m["coverage"] == pytest.approx(2 / 3)  # 4 lies above [1, 3]
    assert m["n"] == 3


def test_seasonal_naive_repeats_last_season_and_widens_each_season():
    y = np.arange(24.0)
    f = seasonal_naive(y, 14, 0.8)
    assert f.yhat[:12].tolist() == y[12:].tolist()
    assert f.yhat[12] == y[12]
    assert (f.upper[12] - f.yhat[12]) == pytest.approx(np.sqrt(2) * (f.upper[0] - f.yhat[0]))


def test_five_month_history_falls_back_to_a_simpler_method():
    config = SpendingConfig(rules={TOTAL: "prophet"})
    y = np.array([100.0, 120.0, 90.0, 110.0, 105.0])
    f = forecast_series(y, pd.Timestamp("2024-01-01"), 6, config, "prophet")
    assert f.method == "ses"
    assert len(f.yhat) == 6 and (f.lower <= f.yhat).all() and (f.yhat <= f.upper).all()
    assert 80 < f.yhat[0] < 130 and (f.lower >= 0).all()
    assert forecast_series(y[:2], pd.Timestamp("2024-01-01"), 3, config, "prophet").method == (
        "naive"
    )


def test_forecaster_answers_every_category_with_its_method():
    months = pd.date_range("2024-01-01", periods=5, freq="MS")
    log = _log([(m, -100.0 - i, c) for i, m in enumerate(months) for c in ("Groceries", "Health")])
    forecaster = SpendingForecaster(SpendingConfig(rules={"Groceries": "prophet"}))
    result = forecaster.forecast(log, months=3)
    assert result.last_month == "2024-05"
    assert result.methods == {"Groceries": "ses", "Health": "ses", TOTAL: "ses"}
    assert [r["month"] for r in result.rows[:3]] == ["2024-06", "2024-07", "2024-08"]
    assert len(result.rows) == 9
    one = forecaster.forecast(log, months=2, category="Shopping")  # never spent on
    assert one.methods == {"Shopping": "naive"} and all(r["yhat"] == 0 for r in one.rows)
    frame = forecaster.predict_frame(log.assign(months=2, forecast_category=TOTAL))
    assert list(frame["method"]) == ["ses", "ses"] and list(frame["category"]) == [TOTAL] * 2
    with pytest.raises(ValueError, match="months"):
        forecaster.forecast(log, months=13)


def test_config_round_trip(tmp_path):
    config = SpendingConfig(
        seasonality_prior_scale=0.05, prophet_interval_width=0.9,
        rules={TOTAL: "prophet", "Transport": "ses"}, default_method="seasonal_naive",
    )  # fmt: skip
    SpendingForecaster(config).save(tmp_path)
    assert SpendingForecaster.load(tmp_path).config == config
    (tmp_path / "spending.json").write_text('{"model": "intent"}')
    with pytest.raises(ValueError, match="not a spending"):
        SpendingConfig.load(tmp_path)
    with pytest.raises(ValueError, match="unknown"):
        SpendingConfig(rules={TOTAL: "arima"})


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"months": 0}, "months"),
        ({"months": 13}, "months"),
        ({"history": []}, "history"),
        ({"history": [{"date": "2017-31-01", "amount": 1.0, "category": "Groceries"}]}, "date"),
        ({"history": [{"date": "2017-01-31", "amount": -1.0, "category": "Groceries"}]}, "amount"),
        ({"history": [{"date": "2017-01-31", "amount": float("nan"), "category": "G"}]}, "amount"),
        ({"history": [{"date": "2017-01-31", "amount": 1.0, "category": ""}]}, "category"),
        ({"user_id": "no spaces allowed"}, "user_id"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_spending_request_names_the_bad_field(overrides, field):
    from pydantic import ValidationError

    from services.schemas import BatchSizeError
    from services.spending_schemas import SpendingRequest

    body = {"user_id": "u1", "months": 6, **overrides}
    with pytest.raises((ValidationError, BatchSizeError)) as info:
        SpendingRequest.model_validate(body)
    if isinstance(info.value, BatchSizeError):  # an empty history: 422
        assert str(info.value) == f"{field}: at least 1 item, got 0"
    else:
        assert field in str(info.value.errors()[0]["loc"])


def test_spending_request_accepts_a_history_and_defaults_to_ingest():
    from services.spending_schemas import SpendingRequest

    r = SpendingRequest.model_validate(
        {"user_id": "u1", "months": 12,
         "history": [{"date": "2017-01-31", "amount": 10.5, "category": "Groceries"}]}
    )  # fmt: skip
    assert r.ingest and r.history[0].date.isoformat() == "2017-01-31" and r.category is None


def test_prophet_fit_that_runs_out_of_time_falls_back_and_says_so():
    y = 1000 + 100 * np.sin(np.arange(30) / 12 * 2 * np.pi)
    config = SpendingConfig(prophet_timeout_s=1e-4)
    f = forecast_series(y, pd.Timestamp("2020-01-01"), 3, config, "prophet")
    assert f.method == "seasonal_naive" and len(f.yhat) == 3
    assert f.yhat.tolist() == pytest.approx(y[18:21].tolist())
