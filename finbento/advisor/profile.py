"""A short, plain-words profile of a user for the advisor's prompt, from the other models.

Inputs are what finbento already keeps per user: monthly spending totals per category
(:mod:`finbento.spending_store`) and the last credit-risk band and spending forecast
(:mod:`finbento.profile_store`). Only aggregates go into the prompt: no transactions, no ids.
"""

from __future__ import annotations

import pandas as pd

from finbento.spending import TOTAL, monthly_series

#: Months of recent spending summarised.
RECENT_MONTHS = 3
#: Categories named, largest first.
TOP_CATEGORIES = 5


def _inr(amount: float) -> str:
    return f"₹{amount:,.0f}"


def spending_summary(history: pd.DataFrame) -> str | None:
    """Average monthly spending of the last :data:`RECENT_MONTHS` months, total and top categories.

    Args:
        history: ``date``, ``amount`` (INR spent, > 0), ``category``, e.g.
            :meth:`finbento.spending_store.SpendingStore.history`.

    Returns:
        one sentence, or None if there is no spending.
    """
    if history.empty:
        return None
    table = monthly_series(history.assign(amount=-history["amount"]))
    if table.empty:
        return None
    recent = table.iloc[-RECENT_MONTHS:]
    mean = recent.mean()
    top = mean.drop(TOTAL).sort_values(ascending=False)
    top = top[top > 0].iloc[:TOP_CATEGORIES]
    months = f"{recent.index[0]:%Y-%m} to {recent.index[-1]:%Y-%m}"
    parts = ", ".join(f"{name} {_inr(value)}" for name, value in top.items())
    return f"Average monthly spending {months}: {_inr(mean[TOTAL])} in total" + (
        f"; largest categories: {parts}." if parts else "."
    )


def build_profile(history: pd.DataFrame, facts: dict[str, str]) -> str | None:
    """The profile text: recent spending, the spending forecast and the credit-risk band.

    Args:
        history: the user's monthly spending (see :func:`spending_summary`); may be empty.
        facts: the user's :class:`finbento.profile_store.ProfileStore` fields; may be empty.

    Returns:
        a few sentences, or None if nothing is known about the user.
    """
    lines = []
    summary = spending_summary(history)
    if summary:
        lines.append(summary)
    if "forecast_total" in facts:
        lines.append(
            f"Forecast spending for {facts.get('forecast_month', 'next month')}: "
            f"{_inr(float(facts['forecast_total']))} (80 % interval "
            f"{_inr(float(facts.get('forecast_lower', 0)))}-"
            f"{_inr(float(facts.get('forecast_upper', 0)))})."
        )
    if "risk_band" in facts:
        lines.append(
            f"Credit-risk band: {facts['risk_band']} (score {facts.get('risk_score', '?')}/100, "
            "higher is riskier)."
        )
    return " ".join(lines) or None
