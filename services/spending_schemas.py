"""Request and response schemas of the spending route."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from services.schemas import _ID, MAX_BATCH, ItemCount

#: Most history rows accepted in one request (ten years of daily spending in 3 categories).
MAX_HISTORY = 10 * MAX_BATCH


class SpendingItem(BaseModel):
    """One past expense (or a month's total) of the user."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    # Bounded: pandas timestamps end in 2262, and a date outside them was a 500 (schemathesis).
    date: dt.date = Field(ge=dt.date(1900, 1, 1), le=dt.date(2100, 12, 31),
                          description="YYYY-MM-DD, 1900-2100")  # fmt: skip
    amount: float = Field(ge=0, le=1e9, description="INR spent (positive = spend)")
    category: str = Field(min_length=1, max_length=64, description="App category, e.g. Groceries")


class SpendingRequest(BaseModel):
    """What to forecast, and optionally the history to forecast from."""

    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(pattern=_ID, description="The user (history looked up when not given)")
    months: int = Field(ge=1, le=12, description="Months ahead, 1-12")
    category: str | None = Field(
        None, min_length=1, max_length=64, description="One category; default all + 'total'"
    )
    history: Annotated[list[SpendingItem], ItemCount(1, MAX_HISTORY)] | None = None
    ingest: bool = Field(
        True, description="Store the sent history's monthly totals for later requests without one"
    )


class MonthForecast(BaseModel):
    """Forecast spending of one category in one month (INR)."""

    month: str = Field(description="YYYY-MM")
    category: str = Field(description="App category, or 'total'")
    yhat: float
    yhat_lower: float
    yhat_upper: float


class SpendingPrediction(BaseModel):
    """Monthly forecasts with intervals, and which method answered each category."""

    user_id: str
    forecast: list[MonthForecast]
    method: dict[str, str] = Field(description="category -> method that answered")
    interval_width: float = Field(description="Coverage the intervals aim at, e.g. 0.8")
    cached: bool = Field(description="Answered from the forecast cache")
    model: str = "spending"
    model_version: str
