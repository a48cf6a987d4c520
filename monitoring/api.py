"""Admin drift routes, mounted at ``/monitoring`` on the all-in-one Bento (and reusable elsewhere).

- ``POST /monitoring/drift/{model}/check?window=N``: check the newest ``N`` logged predictions
  against the served version's training reference;
- ``GET /monitoring/drift/{model}``: the latest check's summary;
- ``POST /monitoring/drift/check-all``: check every model;
- ``GET /monitoring/drift/alerts``: open alerts (warning or critical, not acknowledged);
- ``DELETE /monitoring/drift/alerts[?model=M]``: acknowledge alerts.

Every route needs ``Authorization: Bearer <FINBENTO_ADMIN_TOKEN>`` (401 without; 403 while no
token is configured). A check runs Evidently in a worker thread (2-5 s); its HTML report lands in
the drift reports directory next to the JSON summary.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request

from finbento.settings import get_settings
from monitoring.alerts import clear_alerts, list_alerts, update_alerts

#: The models drift is checked for (those the services log).
MODELS = ("credit-risk", "fraud", "anomaly", "intent", "ner", "categorizer", "spending", "advisor")

app = FastAPI(title="finbento monitoring", docs_url=None, redoc_url=None, openapi_url=None)


def require_admin(request: Request) -> None:
    """FastAPI dependency: the admin bearer token (see the module docstring).

    Raises:
        HTTPException: 403 when no token is configured, 401 when it is missing or wrong.
    """
    token = get_settings().admin_token
    if token is None or not token.get_secret_value():
        raise HTTPException(403, "admin routes are disabled: set FINBENTO_ADMIN_TOKEN")
    scheme, _, sent = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        sent.strip().encode(), token.get_secret_value().encode()
    ):
        raise HTTPException(401, "admin token required", headers={"WWW-Authenticate": "Bearer"})


Admin = Annotated[None, Depends(require_admin)]


def _reports_dir():
    s = get_settings()
    return s.drift_reports_dir or s.state_dir / "drift"


def _known(model: str) -> str:
    if model not in MODELS:
        raise HTTPException(404, f"unknown model {model!r}; known: {', '.join(MODELS)}")
    return model


def check(model: str, window: int) -> dict:
    """Run one check and update the alerts.

    Returns:
        ``{"model", "checked": bool, ...summary}``; ``checked`` is false (with ``reason``) when
        there is too little logged traffic or nothing comparable.

    Raises:
        LookupError: the served version has no reference sample in MLflow.
    """
    from monitoring.drift import run_drift_check

    result = run_drift_check(get_settings(), model, window, directory=_reports_dir())
    if result is None:
        reason = "too few logged predictions, or no numeric or categorical inputs"
        return {"model": model, "checked": False, "reason": reason}
    alert = update_alerts(_reports_dir(), result)
    return {"model": model, "checked": True, "alert": alert, **result.to_dict()}


@app.post("/drift/check-all")
async def check_all(_: Admin, window: Annotated[int, Query(ge=30, le=100_000)] = 5000) -> dict:
    """Check every model; one entry per model (errors reported, not raised)."""
    out = {}
    for model in MODELS:
        try:
            out[model] = await asyncio.to_thread(check, model, window)
        except (LookupError, ValueError) as exc:
            out[model] = {"model": model, "checked": False, "reason": str(exc)}
    return out


@app.post("/drift/{model}/check")
async def check_one(
    model: str, _: Admin, window: Annotated[int, Query(ge=30, le=100_000)] = 5000
) -> dict:
    """Check one model's newest ``window`` logged predictions against its reference."""
    try:
        return await asyncio.to_thread(check, _known(model), window)
    except LookupError as exc:
        raise HTTPException(409, f"{model}: {exc}") from exc


@app.get("/drift/alerts")
async def alerts(_: Admin) -> dict:
    """Open drift alerts by model."""
    return {"alerts": list_alerts(_reports_dir())}


@app.delete("/drift/alerts")
async def acknowledge(_: Admin, model: str | None = None) -> dict:
    """Acknowledge one model's alert, or all of them."""
    return {"cleared": clear_alerts(_reports_dir(), model)}


@app.get("/drift/{model}")
async def latest(model: str, _: Admin) -> dict:
    """The latest check of ``model``."""
    from monitoring.drift import load_latest

    result = load_latest(_reports_dir(), _known(model))
    if result is None:
        raise HTTPException(
            404, f"no drift check of {model} yet: POST /monitoring/drift/{model}/check"
        )
    return result.to_dict()
