"""One valid request body per public prediction route, shared by the load benchmarks."""

from __future__ import annotations

from functools import cache

#: A card transaction the fraud and anomaly routes score without ingesting it.
TRANSACTION = {"transaction_id": "load-1", "tx_datetime": "2018-08-20T10:15:00",
               "customer_id": "load-c1", "terminal_id": "load-t1", "tx_amount": 42.5}  # fmt: skip


@cache
def spending_history() -> list[dict]:
    """The shipped household's daily spending (date, amount, category) for /predict/spending."""
    from finbento.settings import get_settings
    from finbento.spending import expenses
    from trainers.spending import load_transactions

    history = expenses(load_transactions(get_settings()))
    return [{"date": d.strftime("%Y-%m-%d"), "amount": float(a), "category": c}
            for d, a, c in zip(history["date"], history["amount"], history["category"],
                               strict=True)]  # fmt: skip


def bodies(with_slow: bool = False) -> dict[str, dict]:
    """Route -> one valid request body (shipped examples).

    Args:
        with_slow: also the forecast and advisor routes (/predict/spending answers from its
            forecast cache after the first call; /advice answers from retrieval without an LLM key).
    """
    from finbento.features.credit_risk import EXAMPLE_APPLICANT

    routes = {
        "/predict/credit-risk": {"applicant": EXAMPLE_APPLICANT},
        "/predict/fraud": {"transaction": TRANSACTION, "ingest": False},
        "/predict/anomaly": {"transaction": TRANSACTION, "ingest": False},
        "/predict/intent": {"query": "I still have not received my new card"},
        "/predict/ner": {"text": "Pay Rs 1,200 to Airtel on Friday"},
        "/predict/category": {"description": "POS Purchase Woolworths Sandton", "amount": -250.0},
        "/recommend": {"products_held": ["ind_cco_fin_ult1"], "k": 3},
    }
    if with_slow:
        routes["/predict/spending"] = {"user_id": "household", "months": 6,
                                       "history": spending_history(), "ingest": False}  # fmt: skip
        routes["/advice"] = {"session_id": "bench-1", "message": "How can I save for a holiday?"}
    return routes


def bundle_routes(bundle: str, with_slow: bool = True) -> dict[str, dict]:
    """The routes of :func:`bodies` that a bundle's Bento serves (by the models it packages)."""
    from finbento.bentos import BUNDLES
    from services.http_metrics import route_model

    models = set(BUNDLES[bundle].models)
    return {r: b for r, b in bodies(with_slow).items() if route_model(r) in models}
