"""Trainer for ``spending``: the global configuration of the monthly spending forecaster.

Data: one Indian household's expense log, January 2015 - March 2018 (Kaggle "Daily Household
Transactions", ``data/categories/household_transactions``, loaded by
:func:`finbento.datasets.load_household_transactions`), expenses mapped to the app taxonomy by
``mapping.csv`` and summed per month (:func:`finbento.spending.monthly_series`: 39 months).

Steps: a rolling-origin backtest (Tashman 2000) on the total and the top categories: at every
cut-off from month ``MIN_TRAIN`` on, each method is fitted on the months before and forecasts the
next 1-6; MASE (Hyndman & Koehler 2006, scaled per cut-off by the in-sample seasonal naive error),
sMAPE and 80 % interval coverage per method and series. A small grid of Prophet settings is scored
first on the total and the one with the lowest MASE is kept; then each series' rule is the
method with the lowest MASE. The configuration (a JSON file) is logged as a pyfunc
(trainers/pyfunc.py) with the backtest table and plots, registered and gated.

The grid and the rules are chosen on the same cut-offs the figures are reported on, so the figures
are somewhat optimistic (few choices: 4 settings, 3 methods).
"""

from __future__ import annotations

import itertools
import logging
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd

from finbento.categorizer import assign_categories, load_mapping
from finbento.datasets import load_household_transactions
from finbento.settings import Settings
from finbento.spending import (
    CONFIG_FILE,
    METHODS,
    MODEL_NAME,
    TOTAL,
    SpendingConfig,
    SpendingForecaster,
    forecast_series,
    monthly_series,
)
from trainers import registry, tracking
from trainers.evaluation import forecast_metrics, mase_scale
from trainers.gate import GateDecision
from trainers.pyfunc import ARTIFACT, export_directory, log_directory_model
from trainers.registry import TrainResult

log = logging.getLogger(__name__)

HOUSEHOLD_FILE = Path("household_transactions") / "daily_household_transactions.csv"
#: Methods compared in the backtest (``naive`` is only a fallback for very short histories).
CANDIDATES = ("prophet", "seasonal_naive", "ses")
HORIZON = 6
#: First cut-off: months of history before it (two seasons, so MASE scales by m = 12).
MIN_TRAIN = 24
TOP_CATEGORIES = 5
#: Prophet seasonality_prior_scale values scored by the backtest (changepoint_prior_scale 0.05;
#: 0.01 and 0.5 did no better, and the log scale did worse, in a first study).
GRID = (0.03, 0.05, 0.1)
#: Nominal Prophet interval widths tried, narrowest first (see ``prophet_interval_width``).
PROPHET_WIDTHS = (0.8, 0.9, 0.95)


@dataclass
class Prepared:
    """Monthly series of one training run.

    Attributes:
        table: :func:`monthly_series` of the household's expenses (months x categories + total).
        series: the backtested series: ``total`` then the top categories by spending.
        cutoffs: history lengths (months) at which the backtest forecasts.
    """

    table: pd.DataFrame
    series: list[str]
    cutoffs: list[int]


def load_transactions(settings: Settings) -> pd.DataFrame:
    """The household log's ``Expense`` and ``Income`` rows with their app ``category``.

    ``Transfer-Out`` rows (moves to the household's own accounts) are kept apart: not spending.

    Returns:
        DataFrame with ``date``, ``amount`` (INR, negative = money out), ``category``.
    """
    folder = settings.categories_data_path
    df = load_household_transactions(folder / HOUSEHOLD_FILE)
    df["category"] = assign_categories(df, load_mapping(folder))
    return df.loc[df["source_label"] != "Transfer-Out", ["date", "amount", "category"]]


def load_split(settings: Settings, sample: int | None = None) -> Prepared:
    """Monthly series and backtest cut-offs.

    Args:
        settings: ``categories_data_path``.
        sample: keep only the last ``sample`` cut-offs (fast tests); None = every month from
            :data:`MIN_TRAIN` to the last but one.
    """
    table = monthly_series(load_transactions(settings))
    top = table.drop(columns=TOTAL).sum().sort_values(ascending=False).index[:TOP_CATEGORIES]
    cutoffs = list(range(MIN_TRAIN, len(table)))
    if sample is not None:
        cutoffs = cutoffs[-max(1, sample) :]
    return Prepared(table, [TOTAL, *top], cutoffs)


def backtest(p: Prepared, config: SpendingConfig, methods: tuple[str, ...]) -> pd.DataFrame:
    """Rolling-origin forecasts of every series by every method.

    Each series starts at its first spending month, as in serving. A method the history does not
    allow falls back as in serving (:func:`finbento.spending.forecast_series`).

    Returns:
        one row per (series, method, cutoff, h): ``series``, ``method``, ``answered_by``,
        ``cutoff`` (month forecast from, "YYYY-MM"), ``h`` (1-6), ``actual``, ``yhat``,
        ``lower``, ``upper`` (INR) and ``scale`` (MASE denominator of that history).
    """
    rows = []
    for name, method, n in itertools.product(p.series, methods, p.cutoffs):
        y = p.table[name].to_numpy()
        first = int(np.argmax(y > 0))
        history = y[first:n]
        h = min(HORIZON, len(y) - n)
        f = forecast_series(history, p.table.index[first], h, config, method)
        scale = mase_scale(history)
        for k in range(h):
            rows.append({
                "series": name, "method": method, "answered_by": f.method,
                "cutoff": p.table.index[n].strftime("%Y-%m"), "h": k + 1, "actual": y[n + k],
                "yhat": f.yhat[k], "lower": f.lower[k], "upper": f.upper[k], "scale": scale,
            })  # fmt: skip
    return pd.DataFrame(rows)


def score(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`trainers.evaluation.forecast_metrics` per (series, method) of a backtest table."""
    return pd.DataFrame([
        {"series": s, "method": m, **forecast_metrics(g["actual"], g["yhat"], g["lower"],
                                                      g["upper"], g["scale"])}
        for (s, m), g in table.groupby(["series", "method"], sort=False)
    ])  # fmt: skip


def choose_config(p: Prepared, base: SpendingConfig) -> tuple[SpendingConfig, pd.DataFrame]:
    """Choose Prophet's priors and interval width, then each series' method, by backtest.

    The seasonality prior of :data:`GRID` with the lowest MASE on the total (the series every
    user has; the categories' MASE spread too widely to average) is kept; the Prophet width is
    the narrowest of :data:`PROPHET_WIDTHS` whose intervals cover at least ``interval_width`` of
    the total's outcomes (the widest if none does); each series' rule is its method with the
    lowest MASE. The default (categories outside the top ones) is the most frequent rule among
    the categories, ties going to the cheaper method: request time grows with each Prophet fit.

    Returns:
        the configuration (rules, default method, priors) and the backtest table of every
        candidate method under it.
    """
    best, best_mase = base, np.inf
    total = Prepared(p.table, [TOTAL], p.cutoffs)
    for prior in GRID:
        config = replace(base, seasonality_prior_scale=prior)
        mase = score(backtest(total, config, ("prophet",)))["mase"].iloc[0]
        log.info("seasonality_prior_scale %s: MASE on the total %.3f", prior, mase)
        if mase < best_mase:
            best, best_mase = config, mase
    for width in PROPHET_WIDTHS:
        best = replace(best, prophet_interval_width=width)
        coverage = score(backtest(total, best, ("prophet",)))["coverage"].iloc[0]
        if coverage >= best.interval_width:
            break
    table = backtest(p, best, CANDIDATES)
    scores = score(table)
    winners = scores.loc[scores.groupby("series")["mase"].idxmin()]
    rules = dict(zip(winners["series"], winners["method"], strict=True))
    counts = pd.Series([m for s, m in rules.items() if s != TOTAL]).value_counts()
    default = max(counts.index, key=lambda m: (counts[m], METHODS.index(m)))
    return replace(best, rules=rules, default_method=str(default)), table


def metrics_of(table: pd.DataFrame, config: SpendingConfig, series: list[str]) -> dict[str, float]:
    """Headline metrics: the served method and seasonal naive per series.

    Returns:
        ``mase_<s>``, ``smape_<s>``, ``coverage_<s>``, ``mase_seasonal_naive_<s>`` for
        ``s`` = ``total`` and each category (lower case, ``&`` and spaces as ``_``), plus
        ``mase_skill_total`` = 1 - ``mase_total`` (higher is better, for the gate) and
        ``categories_beating_seasonal_naive``.
    """
    scores = score(table).set_index(["series", "method"])
    out: dict[str, float] = {}
    beating = 0
    for s in series:
        key = _key(s)
        served = scores.loc[(s, config.method_for(s))]
        naive = scores.loc[(s, "seasonal_naive")]
        out |= {f"mase_{key}": served["mase"], f"smape_{key}": served["smape"],
                f"coverage_{key}": served["coverage"],
                f"mase_seasonal_naive_{key}": naive["mase"]}  # fmt: skip
        if s != TOTAL:
            beating += int(served["mase"] < naive["mase"])
    out["mase_skill_total"] = 1 - out["mase_total"]
    out["categories_beating_seasonal_naive"] = float(beating)
    return {k: float(v) for k, v in out.items()}


def _key(series: str) -> str:
    return "_".join(series.lower().replace("&", " ").split())


def evaluate(forecaster: SpendingForecaster, p: Prepared) -> dict[str, float]:
    """Backtest a forecaster's configuration (its rules' methods and seasonal naive)."""
    methods = tuple({*forecaster.config.rules.values(), "seasonal_naive"})
    return metrics_of(backtest(p, forecaster.config, methods), forecaster.config, p.series)


def plot_series(p: Prepared, table: pd.DataFrame, config: SpendingConfig, name: str) -> plt.Figure:
    """History and the served method's 1-month-ahead backtest forecasts with their intervals."""
    served = table[(table["series"] == name) & (table["method"] == config.method_for(name))]
    one = served[served["h"] == 1]
    months = pd.to_datetime(one["cutoff"])
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(p.table.index, p.table[name], color="black", label="spent")
    ax.plot(months, one["yhat"], color="tab:blue", marker="o", label="forecast (1 month ahead)")
    ax.fill_between(months, one["lower"], one["upper"], color="tab:blue", alpha=0.2,
                    label=f"{config.interval_width:.0%} interval")  # fmt: skip
    ax.set_title(f"spending: {name} ({config.method_for(name)})")
    ax.set_ylabel("INR per month")
    ax.legend()
    fig.tight_layout()
    return fig


def load_scorer(version: str) -> SpendingForecaster:
    """A registered ``spending`` version, as served (downloaded into a temporary directory)."""
    directory = Path(tempfile.mkdtemp(prefix="finbento-spending-"))
    export(version, directory)
    return SpendingForecaster.load(directory)


def export(version: str, directory: Path) -> None:
    """Write a registered version's serving file (``spending.json``) into a folder."""
    export_directory(MODEL_NAME, version, directory)


def gate(
    client: mlflow.MlflowClient,
    settings: Settings,
    version: str,
    p: Prepared,
    candidate_metrics: dict[str, float] | None = None,
    promote: bool = False,
) -> GateDecision:
    """Gate ``version`` against the champion on the same backtest (registry.run_gate)."""
    return registry.run_gate(
        client, MODEL_NAME, version, settings.spending_gate,
        lambda v: evaluate(load_scorer(v), p), candidate_metrics, promote=promote,
    )  # fmt: skip


def train(
    settings: Settings,
    sample: int | None = None,
    promote: bool = True,
    on_stage: tracking.Stage = lambda s: None,
) -> TrainResult:
    """Choose, log, register and (if the gate agrees) promote a new ``spending`` configuration.

    Args:
        settings: data, MLflow and gate settings.
        sample: backtest only the last ``sample`` cut-offs (tests); None = all 15.
        promote: run the gate and move ``champion`` if it passes.
        on_stage: called with a short label as each stage starts.

    Returns:
        the run id, the registered version, the backtest metrics and the gate's decision.
    """
    client = registry.configure(settings)
    on_stage("loading the household log and summing months")
    p = load_split(settings, sample)
    on_stage(f"rolling-origin backtest on {len(p.cutoffs)} cut-offs, {len(p.series)} series")
    config, table = choose_config(p, SpendingConfig())
    metrics = metrics_of(table, config, p.series)
    config = replace(config, backtest={k: round(v, 4) for k, v in metrics.items()})
    on_stage("logging to MLflow")
    with (
        tempfile.TemporaryDirectory() as tmp,
        mlflow.start_run(run_name=f"{MODEL_NAME}-train") as run,
    ):
        directory = Path(tmp) / ARTIFACT
        forecaster = SpendingForecaster(config)
        forecaster.save(directory)
        mlflow.set_tags({"model_name": MODEL_NAME, "data": "household_transactions",
                         "split": f"rolling origin, cut-offs {p.cutoffs[0]}-{p.cutoffs[-1]}, "
                                  f"h 1-{HORIZON}"})  # fmt: skip
        mlflow.log_params({
            "changepoint_prior_scale": config.changepoint_prior_scale,
            "seasonality_prior_scale": config.seasonality_prior_scale,
            "prophet_interval_width": config.prophet_interval_width,
            "interval_width": config.interval_width,
            "country_holidays": config.country_holidays, "n_months": len(p.table),
            "n_cutoffs": len(p.cutoffs), "series": ",".join(p.series),
            **{f"rule_{_key(s)}": m for s, m in config.rules.items()},
        })  # fmt: skip
        mlflow.log_metrics(metrics)
        mlflow.log_text(table.to_csv(index=False), "backtest/forecasts.csv")
        mlflow.log_text(score(table).to_csv(index=False), "backtest/scores.csv")
        for name in p.series:
            fig = plot_series(p, table, config, name)
            mlflow.log_figure(fig, f"plots/forecast_{_key(name)}.png")
            plt.close(fig)
        head = load_transactions(settings).head(5)
        example = head.assign(date=head["date"].dt.strftime("%Y-%m-%d"), months=6,
                              forecast_category=TOTAL)  # fmt: skip
        info = log_directory_model(
            directory, "finbento.spending:SpendingForecaster", MODEL_NAME, example,
            ["prophet", "statsforecast", "pandas"], metadata={"config_file": CONFIG_FILE},
        )  # fmt: skip
    version = str(info.registered_model_version)
    on_stage("promotion gate")
    decision = registry.gate_and_promote(
        client, MODEL_NAME, version, metrics, settings.spending_gate,
        lambda v: evaluate(load_scorer(v), p), promote=promote,
    )  # fmt: skip
    return TrainResult(run.info.run_id, version, metrics, decision)
