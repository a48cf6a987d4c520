"""Credit-risk applicant fields and model features (Taiwan default-of-credit-card-clients data).

Source: Yeh, I. C., & Lien, C. H. (2009). The comparisons of data mining techniques for the
predictive accuracy of probability of default of credit card clients. Expert Systems with
Applications 36(2). UCI ML Repository, CC BY 4.0. Amounts are in New Taiwan dollars (NT$); the six
monthly columns run from the most recent month (September 2005: ``pay_0``, ``bill_amt1``,
``pay_amt1``) back to April 2005 (``pay_6``, ``bill_amt6``, ``pay_amt6``).

Repayment status codes (``pay_*``): -2 no consumption, -1 paid in full, 0 revolving credit (minimum
paid), 1..9 payment delayed by that many months (9 = nine months or more).
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

TARGET = "default_payment_next_month"

RepaymentStatus = Annotated[
    int,
    Field(
        ge=-2,
        le=9,
        description="-2 no consumption, -1 paid in full, 0 revolving, 1-9 months of delay",
    ),
]
BillAmount = Annotated[
    float,
    Field(ge=-10_000_000, le=10_000_000, description="Bill statement amount, NT$ (may be < 0)"),
]
PaymentAmount = Annotated[float, Field(ge=0, le=10_000_000, description="Amount paid, NT$")]


#: A valid applicant: two months late on the last two bills, ~95 % of the limit used.
EXAMPLE_APPLICANT: dict[str, float | int] = {
    "limit_bal": 50000.0, "sex": 2, "education": 2, "marriage": 1, "age": 35,
    "pay_0": 2, "pay_2": 2, "pay_3": 0, "pay_4": 0, "pay_5": 0, "pay_6": 0,
    "bill_amt1": 48000.0, "bill_amt2": 47000.0, "bill_amt3": 46000.0, "bill_amt4": 30000.0,
    "bill_amt5": 29000.0, "bill_amt6": 28000.0, "pay_amt1": 0.0, "pay_amt2": 1500.0,
    "pay_amt3": 1200.0, "pay_amt4": 1100.0, "pay_amt5": 1000.0, "pay_amt6": 1000.0,
}  # fmt: skip


class Applicant(BaseModel):
    """One credit-card client, as the Taiwan data set describes them (all fields required)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        allow_inf_nan=False,
        json_schema_extra={"example": EXAMPLE_APPLICANT},  # OpenAPI 3.0 "example"
    )

    limit_bal: float = Field(
        ge=1, le=10_000_000, description="Credit limit incl. family/supplementary cards, NT$"
    )
    sex: int = Field(
        ge=1, le=2, description="1 male, 2 female; for the fairness check only, not a model input"
    )
    education: int = Field(
        ge=0,
        le=6,
        description="1 graduate school, 2 university, 3 high school, 4 other, 0/5/6 unknown",
    )
    marriage: int = Field(ge=0, le=3, description="1 married, 2 single, 3 other, 0 unknown")
    age: int = Field(ge=18, le=100, description="Age in years")
    pay_0: RepaymentStatus
    pay_2: RepaymentStatus
    pay_3: RepaymentStatus
    pay_4: RepaymentStatus
    pay_5: RepaymentStatus
    pay_6: RepaymentStatus
    bill_amt1: BillAmount
    bill_amt2: BillAmount
    bill_amt3: BillAmount
    bill_amt4: BillAmount
    bill_amt5: BillAmount
    bill_amt6: BillAmount
    pay_amt1: PaymentAmount
    pay_amt2: PaymentAmount
    pay_amt3: PaymentAmount
    pay_amt4: PaymentAmount
    pay_amt5: PaymentAmount
    pay_amt6: PaymentAmount


#: The applicant fields in the order of the raw matrix, shape (n, 23).
RAW_COLUMNS: tuple[str, ...] = tuple(Applicant.model_fields)
PAY = ("pay_0", "pay_2", "pay_3", "pay_4", "pay_5", "pay_6")
BILL = tuple(f"bill_amt{i}" for i in range(1, 7))
PAID = tuple(f"pay_amt{i}" for i in range(1, 7))
#: Applicant fields kept out of the model (protected attributes, used for fairness checks only).
EXCLUDED = ("sex",)

#: Engineered features and the formula of each (see :func:`feature_matrix`).
ENGINEERED: dict[str, str] = {
    "utilization": "bill_amt1 / limit_bal",
    "utilization_6m": "mean(bill_amt1..6) / limit_bal",
    "payment_ratio": "pay_amt1 / max(bill_amt2, 1)",
    "payment_ratio_6m": "sum(pay_amt1..6) / max(sum(bill_amt1..6), 1)",
    "months_delayed": "count of pay_* > 0",
    "max_delay": "max(pay_*)",
    "bill_growth": "(bill_amt1 - bill_amt6) / limit_bal",
}

#: The model's input columns, in order: shape (n, 29).
FEATURES: tuple[str, ...] = (
    *(c for c in RAW_COLUMNS if c not in EXCLUDED),
    *ENGINEERED,
)

_MONTHS = (
    "last month",
    "2 months ago",
    "3 months ago",
    "4 months ago",
    "5 months ago",
    "6 months ago",
)

#: Plain-words name of every model feature, used in the ``reasons`` of a prediction.
PLAIN_NAMES: dict[str, str] = {
    "limit_bal": "Credit limit",
    "education": "Education level",
    "marriage": "Marital status",
    "age": "Age",
    **{p: f"Repayment status {m}" for p, m in zip(PAY, _MONTHS, strict=True)},
    **{b: f"Bill amount {m}" for b, m in zip(BILL, _MONTHS, strict=True)},
    **{p: f"Amount paid {m}" for p, m in zip(PAID, _MONTHS, strict=True)},
    "utilization": "Share of the credit limit used last month",
    "utilization_6m": "Average share of the credit limit used over 6 months",
    "payment_ratio": "Last payment compared with the bill before it",
    "payment_ratio_6m": "Payments compared with bills over 6 months",
    "months_delayed": "Number of months with a late payment",
    "max_delay": "Longest payment delay",
    "bill_growth": "Growth of the bill over 6 months",
}

_IDX = {c: i for i, c in enumerate(RAW_COLUMNS)}
_KEEP = [_IDX[c] for c in RAW_COLUMNS if c not in EXCLUDED]


def raw_matrix(applicants: list[Applicant]) -> np.ndarray:
    """Stack applicants into the raw matrix.

    Args:
        applicants: validated applicants.

    Returns:
        float64 array of shape (n, 23), columns in :data:`RAW_COLUMNS` order.

    """
    return np.array(
        [[getattr(a, c) for c in RAW_COLUMNS] for a in applicants], dtype=np.float64
    ).reshape(len(applicants), len(RAW_COLUMNS))


def feature_matrix(raw: np.ndarray) -> np.ndarray:
    """Turn raw applicant rows into model features; the one implementation for training and serving.

    Args:
        raw: array of shape (n, 23), columns in :data:`RAW_COLUMNS` order (NT$, years, codes).

    Returns:
        float32 array of shape (n, 29), columns in :data:`FEATURES` order.

    Raises:
        ValueError: if ``raw`` is not two-dimensional with 23 columns.

    """
    raw = np.asarray(raw, dtype=np.float64)
    if raw.ndim != 2 or raw.shape[1] != len(RAW_COLUMNS):
        raise ValueError(f"raw must have shape (n, {len(RAW_COLUMNS)}), got {raw.shape}")
    col = lambda name: raw[:, _IDX[name]]  # noqa: E731
    limit = col("limit_bal")
    bills = raw[:, [_IDX[c] for c in BILL]]
    paid = raw[:, [_IDX[c] for c in PAID]]
    pay = raw[:, [_IDX[c] for c in PAY]]
    engineered = np.column_stack(
        [
            col("bill_amt1") / limit,
            bills.mean(axis=1) / limit,
            col("pay_amt1") / np.maximum(col("bill_amt2"), 1.0),
            paid.sum(axis=1) / np.maximum(bills.sum(axis=1), 1.0),
            (pay > 0).sum(axis=1),
            pay.max(axis=1),
            (col("bill_amt1") - col("bill_amt6")) / limit,
        ]
    )
    return np.hstack([raw[:, _KEEP], engineered]).astype(np.float32)


def age_band(age: np.ndarray) -> np.ndarray:
    """Age bands for the fairness check: <25, 25-34, 35-44, 45-54, 55+.

    Args:
        age: ages in years, shape (n,).

    Returns:
        array of band labels (str), shape (n,).

    """
    edges = np.array([25, 35, 45, 55])
    labels = np.array(["<25", "25-34", "35-44", "45-54", "55+"])
    return labels[np.searchsorted(edges, np.asarray(age), side="right")]
