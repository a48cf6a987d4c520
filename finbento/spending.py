"""Scoring for the ``spending`` model: monthly spending forecasts per user and category.

A user's history (transactions with ``date``, signed ``amount`` in INR and app ``category``) is
summed into monthly totals per category and in all (:func:`monthly_series`); each series is then
forecast 1-12 months ahead with an 80 % interval by one of four methods:

- ``prophet``: Prophet (Taylor & Letham 2018) on the monthly totals with India's public holidays
  (``add_country_holidays("IN")``) and, with at least ``min_months_yearly`` months, a yearly
  seasonality; needs ``min_months_prophet`` months.
- ``seasonal_naive``: the value 12 months earlier; needs 12 months.
- ``ses``: simple exponential smoothing (statsforecast's optimised alpha), interval of ETS(A,N,N)
  (Hyndman & Athanasopoulos, *Forecasting: principles and practice*, 3rd ed., section 8.7).
- ``naive``: the mean of the months seen, the answer for one or two months of history.

What is stored (the BentoML model) is only the global :class:`SpendingConfig`: Prophet priors and
interval width chosen by a rolling-origin backtest, the history lengths each method needs and the
method-choice rules (the backtest's winner per category). Every user's series are fitted at
request time by :class:`SpendingForecaster`, which answers with the rule's method when the history
allows it and falls back to the next simpler one otherwise, saying which method answered.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

MODEL_NAME = "spending"
CONFIG_FILE = "spending.json"
#: Name of the series summing every spending category.
TOTAL = "total"
#: App categories that are never spending. Money out under ``Transfers`` or ``Investments`` that
#: the user logged as an expense counts (the household log's ``Expense`` rows); callers leave out
#: moves between their own accounts (the log's ``Transfer-Out`` rows) before.
NOT_SPENDING = ("Income",)
#: Methods from the most to the least demanding; a forecast falls back along this order.
METHODS = ("prophet", "seasonal_naive", "ses", "naive")
MAX_MONTHS = 12
SEASON = 12


@dataclass
class SpendingConfig:
    """The global, fitted configuration of the spending forecaster (``spending.json``).

    Attributes:
        country_holidays: ISO country code of Prophet's holiday effects.
        changepoint_prior_scale: Prophet trend flexibility (chosen by backtest).
        seasonality_prior_scale: Prophet seasonality strength (chosen by backtest).
        interval_width: central interval probability of every method (0.8 = 10 %-90 %).
        prophet_interval_width: nominal width asked of Prophet, whose simulated intervals are
            too narrow on short, spiky series; calibrated by backtest so that its intervals cover
            about ``interval_width`` of outcomes.
        uncertainty_samples: Prophet's simulated paths for the interval.
        prophet_algorithm: Stan optimiser tried first for Prophet's MAP fit; where it fails,
            Prophet retries with Newton. Prophet itself starts with Newton below 100 points
            (every monthly series), which took 3.5-17 s per series on some very regular
            histories; L-BFGS fits those in ~0.1 s.
        prophet_max_iter: optimiser iterations at most.
        prophet_timeout_s: wall-clock limit of each optimiser run (seconds); a fit that fails
            or runs out of time falls back to the next simpler method.
        min_months_prophet: history Prophet needs (months).
        min_months_yearly: history for Prophet's yearly seasonality (months).
        min_months_seasonal_naive: history seasonal naive needs (one season).
        min_months_ses: history simple exponential smoothing needs.
        rules: category -> method that won its backtest (``total`` included).
        default_method: method of categories without a rule.
        backtest: headline backtest figures of the training run (for reference only).
    """

    country_holidays: str = "IN"
    changepoint_prior_scale: float = 0.05
    seasonality_prior_scale: float = 10.0
    interval_width: float = 0.8
    prophet_interval_width: float = 0.8
    uncertainty_samples: int = 300
    prophet_algorithm: str = "LBFGS"
    prophet_max_iter: int = 2000
    prophet_timeout_s: float = 2.0
    min_months_prophet: int = 12
    min_months_yearly: int = 24
    min_months_seasonal_naive: int = SEASON
    min_months_ses: int = 3
    rules: dict[str, str] = field(default_factory=dict)
    default_method: str = "prophet"
    backtest: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check methods and the interval width.

        Raises:
            ValueError: if a method is unknown or ``interval_width`` is not in (0, 1).
        """
        unknown = {self.default_method, *self.rules.values()} - set(METHODS)
        if unknown:
            raise ValueError(f"unknown forecasting methods {sorted(unknown)}")
        if not (0 < self.interval_width < 1 and 0 < self.prophet_interval_width < 1):
            raise ValueError("interval widths must be in (0, 1)")

    def save(self, directory: Path) -> None:
        """Write ``spending.json`` (with the model name) into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_FILE).write_text(json.dumps({"model": MODEL_NAME, **asdict(self)}))

    @classmethod
    def load(cls, directory: Path) -> SpendingConfig:
        """Read what :meth:`save` wrote.

        Raises:
            ValueError: if the file is not a spending configuration.
        """
        data = json.loads((Path(directory) / CONFIG_FILE).read_text())
        if data.pop("model", None) != MODEL_NAME:
            raise ValueError(f"{directory}: not a {MODEL_NAME} configuration")
        return cls(**data)

    def method_for(self, category: str) -> str:
        """The method the rules give ``category``."""
        return self.rules.get(category, self.default_method)


def monthly_series(transactions: pd.DataFrame) -> pd.DataFrame:
    """Monthly spending per category and in all, from a transaction log.

    Spending is money out (``amount < 0``) outside :data:`NOT_SPENDING`; income and refunds are
    left out, and so must moves between the user's own accounts be (by the caller). Exact
    duplicate rows (every column equal) are counted once, as the household loader does: pass an
    id column to keep repeated identical purchases.

    Args:
        transactions: columns ``date`` (datetime-like), ``amount`` (INR, negative = money out)
            and ``category`` (app category).

    Returns:
        DataFrame indexed by month start (``DatetimeIndex``, freq ``MS``), one column per
        spending category (sorted) and :data:`TOTAL`; INR >= 0, 0 where nothing was spent, every
        month from the first to the last spending month. Empty (only ``total``) if nothing.

    Raises:
        ValueError: if a column is missing, a date does not parse or an amount is not finite.
    """
    missing = {"date", "amount", "category"} - set(transactions.columns)
    if missing:
        raise ValueError(f"transactions lack columns {sorted(missing)}")
    df = transactions.drop_duplicates()
    amount = pd.to_numeric(df["amount"], errors="raise").astype(float)
    if not np.isfinite(amount).all():
        raise ValueError("amounts must be finite")
    keep = (amount < 0) & ~df["category"].isin(NOT_SPENDING)
    month = pd.to_datetime(df["date"]).dt.to_period("M").dt.to_timestamp()
    spent = pd.DataFrame({"month": month[keep], "category": df["category"][keep].astype(str),
                          "spent": -amount[keep]})  # fmt: skip
    if spent.empty:
        return pd.DataFrame({TOTAL: []}, index=pd.DatetimeIndex([], freq="MS", name="month"))
    table = spent.pivot_table(index="month", columns="category", values="spent", aggfunc="sum")
    months = pd.date_range(table.index.min(), table.index.max(), freq="MS", name="month")
    table = table.reindex(months, fill_value=0.0).fillna(0.0)
    table = table[sorted(table.columns)]
    table[TOTAL] = table.sum(axis=1)
    table.columns.name = None
    return table


def expenses(transactions: pd.DataFrame) -> pd.DataFrame:
    """The spending rows of a transaction log, in the API's convention (positive = spent).

    Args:
        transactions: ``date``, ``amount`` (INR, negative = money out), ``category``.

    Returns:
        the rows :func:`monthly_series` counts as spending, same columns, ``amount`` > 0.
    """
    keep = (transactions["amount"] < 0) & ~transactions["category"].isin(NOT_SPENDING)
    spent = transactions.loc[keep, ["date", "amount", "category"]]
    return spent.assign(amount=-spent["amount"])


@dataclass
class SeriesForecast:
    """Forecast of one monthly series.

    Attributes:
        yhat, lower, upper: INR per month, shape (h,), ``0 <= lower <= yhat <= upper``.
        method: the method that answered (one of :data:`METHODS`).
    """

    yhat: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    method: str


def _z(width: float) -> float:
    from scipy.stats import norm  # not imported at start: the advisor uses this module without it

    return float(norm.ppf(0.5 + width / 2))


def seasonal_naive(y: np.ndarray, h: int, width: float, m: int = SEASON) -> SeriesForecast:
    """The value ``m`` months before, with the normal interval of Hyndman & Athanasopoulos 5.5.

    sigma is the RMS of the in-sample seasonal differences; at step h it grows with
    sqrt(floor((h - 1) / m) + 1). ``m = 1`` is the naive (last value) forecast.

    Raises:
        ValueError: if ``len(y) < m``.
    """
    if len(y) < m:
        raise ValueError(f"seasonal naive needs {m} values, got {len(y)}")
    steps = np.arange(h)
    yhat = y[len(y) - m + steps % m]
    diffs = y[m:] - y[:-m]
    sigma = float(np.sqrt(np.mean(diffs**2))) if len(diffs) else float(np.std(y))
    spread = _z(width) * sigma * np.sqrt(steps // m + 1)
    return SeriesForecast(
        yhat, yhat - spread, yhat + spread, "seasonal_naive" if m > 1 else "naive"
    )


def ses(y: np.ndarray, h: int, width: float) -> SeriesForecast:
    """Simple exponential smoothing (statsforecast, alpha by least squares), ETS(A,N,N) interval.

    The interval's sigma at step h is sigma_1 * sqrt(1 + (h - 1) alpha^2), sigma_1 the RMS of the
    one-step in-sample errors.
    """
    from statsforecast.models import SimpleExponentialSmoothingOptimized

    fit = SimpleExponentialSmoothingOptimized().fit(y.astype(float)).model_
    residuals = fit["residuals"][np.isfinite(fit["residuals"])]
    sigma = float(np.sqrt(np.mean(residuals**2))) if len(residuals) else float(np.std(y))
    yhat = np.repeat(float(fit["mean"][0]), h)
    spread = _z(width) * sigma * np.sqrt(1 + np.arange(h) * fit["alpha"] ** 2)
    return SeriesForecast(yhat, yhat - spread, yhat + spread, "ses")


def mean_forecast(y: np.ndarray, h: int, width: float) -> SeriesForecast:
    """The mean of the months seen, interval from their spread (the answer of last resort)."""
    yhat = np.repeat(float(np.mean(y)) if len(y) else 0.0, h)
    spread = _z(width) * (float(np.std(y, ddof=1)) if len(y) > 1 else abs(yhat[0]))
    return SeriesForecast(yhat, yhat - spread, yhat + spread, "naive")


def _quiet_prophet() -> None:
    for name in ("cmdstanpy", "prophet", "prophet.plot"):
        logging.getLogger(name).setLevel(logging.WARNING)


def prophet_forecast(
    y: np.ndarray, start: pd.Timestamp, h: int, config: SpendingConfig
) -> SeriesForecast:
    """Prophet on monthly totals, with the holidays of ``config.country_holidays``.

    Holiday effects only act on the month-start dates Prophet sees, so they matter little for
    monthly totals; yearly seasonality is on from ``config.min_months_yearly`` months.

    Args:
        y: monthly values, oldest first.
        start: the month of ``y[0]``.
        h: months to forecast after the last one.
        config: priors, interval width, samples, optimiser and its limits.

    Raises:
        RuntimeError: if the Stan optimiser fails.
        TimeoutError: if the fit takes longer than ``config.prophet_timeout_s``.
    """
    _quiet_prophet()
    from prophet import Prophet

    model = Prophet(
        yearly_seasonality=len(y) >= config.min_months_yearly, weekly_seasonality=False,
        daily_seasonality=False, changepoint_prior_scale=config.changepoint_prior_scale,
        seasonality_prior_scale=config.seasonality_prior_scale,
        interval_width=config.prophet_interval_width,
        uncertainty_samples=config.uncertainty_samples,
    )  # fmt: skip
    history = pd.DataFrame({"ds": pd.date_range(start, periods=len(y), freq="MS"), "y": y})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if config.country_holidays:
            model.add_country_holidays(config.country_holidays)
        np.random.seed(0)  # Prophet's interval is simulated: same history, same answer
        _quiet_prophet()
        model.fit(history, algorithm=config.prophet_algorithm, iter=config.prophet_max_iter,
                  timeout=config.prophet_timeout_s)  # fmt: skip
        future = model.make_future_dataframe(h, freq="MS", include_history=False)
        out = model.predict(future)
    return SeriesForecast(out["yhat"].to_numpy(), out["yhat_lower"].to_numpy(),
                          out["yhat_upper"].to_numpy(), "prophet")  # fmt: skip


def usable_methods(n: int, config: SpendingConfig) -> list[str]:
    """Methods a history of ``n`` months allows, most demanding first."""
    need = {
        "prophet": config.min_months_prophet, "seasonal_naive": config.min_months_seasonal_naive,
        "ses": config.min_months_ses, "naive": 0,
    }  # fmt: skip
    return [m for m in METHODS if n >= need[m]]


def forecast_series(
    y: np.ndarray, start: pd.Timestamp, h: int, config: SpendingConfig, method: str
) -> SeriesForecast:
    """Forecast one monthly series with ``method``, or the next simpler one its history allows.

    The answer is clipped at 0 (spending is never negative).

    Args:
        y: monthly INR, oldest first, shape (n,).
        start: month of ``y[0]``.
        h: months ahead (1-12).
        config: the global configuration.
        method: the preferred method (:data:`METHODS`).

    Returns:
        the forecast; ``method`` says which method answered (a Prophet fit that fails or times
        out is answered by the next method).
    """
    y = np.asarray(y, dtype=float)
    allowed = usable_methods(len(y), config)
    chosen = next(m for m in METHODS[METHODS.index(method) :] if m in allowed)
    f = None
    if chosen == "prophet":
        try:
            f = prophet_forecast(y, start, h, config)
        except (RuntimeError, TimeoutError) as exc:
            log.warning("Prophet fit failed (%s): falling back", exc)
            chosen = next(m for m in allowed if m != "prophet")
    if f is None:
        simple = {"seasonal_naive": seasonal_naive, "ses": ses, "naive": mean_forecast}
        f = simple[chosen](y, h, config.interval_width)
    yhat, lower, upper = (np.maximum(np.asarray(v, dtype=float), 0.0)
                          for v in (f.yhat, f.lower, f.upper))  # fmt: skip
    return SeriesForecast(yhat, np.minimum(lower, yhat), np.maximum(upper, yhat), chosen)


@dataclass
class SpendingForecast:
    """A user's forecast.

    Attributes:
        rows: one dict per (month, category): ``month`` ("YYYY-MM"), ``category``, ``yhat``,
            ``yhat_lower``, ``yhat_upper`` (INR, rounded to 0.01).
        methods: category -> the method that answered.
        last_month: the last month of the history ("YYYY-MM"); the forecast starts after it.
    """

    rows: list[dict]
    methods: dict[str, str]
    last_month: str | None


class SpendingForecaster:
    """Fits each series of one user's history at request time with the global configuration.

    Args:
        config: the trained :class:`SpendingConfig`.
    """

    def __init__(self, config: SpendingConfig) -> None:
        self.config = config

    @classmethod
    def load(cls, directory: Path) -> SpendingForecaster:
        """Load the configuration :meth:`save` wrote (``spending.json``)."""
        return cls(SpendingConfig.load(directory))

    def save(self, directory: Path) -> None:
        """Write ``spending.json`` into ``directory``."""
        self.config.save(directory)

    def forecast(
        self, history: pd.DataFrame, months: int = 6, category: str | None = None
    ) -> SpendingForecast:
        """Forecast the months after the history's last month.

        The history's last month is taken as complete. A category the user never spent on is
        forecast as 0 with method ``naive``.

        Args:
            history: transactions as :func:`monthly_series` takes them.
            months: months ahead, 1-12.
            category: one category (or ``"total"``); None = every category and the total.

        Raises:
            ValueError: if ``months`` is out of range, or as :func:`monthly_series`.
        """
        if not 1 <= months <= MAX_MONTHS:
            raise ValueError(f"months must be 1-{MAX_MONTHS}, got {months}")
        table = monthly_series(history)
        if table.empty:
            return SpendingForecast([], {}, None)
        names = list(table.columns) if category is None else [category]
        future = pd.date_range(table.index[-1], periods=months + 1, freq="MS")[1:]
        rows, methods = [], {}
        for name in names:
            y = table[name].to_numpy() if name in table else np.zeros(len(table))
            if not y.any():
                f = SeriesForecast(*(np.zeros(months),) * 3, "naive")
            else:
                first = int(np.argmax(y > 0))  # a series starts with its first spending month
                method = self.config.method_for(name)
                f = forecast_series(y[first:], table.index[first], months, self.config, method)
            methods[name] = f.method
            rows += [
                {"month": m.strftime("%Y-%m"), "category": name, "yhat": round(float(a), 2),
                 "yhat_lower": round(float(lo), 2), "yhat_upper": round(float(hi), 2)}
                for m, a, lo, hi in zip(future, f.yhat, f.lower, f.upper, strict=True)
            ]  # fmt: skip
        return SpendingForecast(rows, methods, table.index[-1].strftime("%Y-%m"))

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Forecast one history (MLflow pyfunc entry point).

        Args:
            frame: transactions (``date``, ``amount``, ``category``); optional columns ``months``
                (first value; default 6) and ``forecast_category`` (first value; default all).

        Returns:
            DataFrame with the rows of :meth:`forecast` and a ``method`` column.
        """
        months = int(frame["months"].iloc[0]) if "months" in frame and len(frame) else 6
        category = None
        if "forecast_category" in frame and len(frame) and frame["forecast_category"].iloc[0]:
            category = str(frame["forecast_category"].iloc[0])
        history = frame[["date", "amount", "category"]]
        result = self.forecast(history, months, category)
        out = pd.DataFrame(result.rows, columns=["month", "category", "yhat", "yhat_lower",
                                                 "yhat_upper"])  # fmt: skip
        out["method"] = out["category"].map(result.methods)
        return out
