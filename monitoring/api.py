"""Admin drift routes, mounted at ``/monitoring`` on the all-in-one Bento (and reusable elsewhere).

- ``POST /monitoring/drift/{model}/check?window=N``: check the newest ``N`` logged predictions
  against the served version's training reference;
- ``GET /monitoring/drift/{model}``: the latest check's summary;
- ``POST /monitoring/drift/check-all``: check every model;
- ``GET /monitoring/drift/alerts``: open alerts (warning or critical, not acknowledged);
- ``DELETE /monitoring/drift/alerts[?model=M]``: acknowledge alerts.

Every route needs ``Authorization: Bearer <FINBENTO_ADMIN_TOKEN>`` (401 without; 403 while no
token is configured). A check runs Evidently in a worker thread (2-5 s, more on a cold start or a
busy machine); the route waits up to :data:`WAIT_S` for it and answers 200 with the result, or 202
while it is still running (poll ``GET /monitoring/drift/{model}``): the services' request timeout
stays short. Its HTML report lands in the drift reports directory next to the JSON summary.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from finbento.auth import admin_refusal
from finbento.settings import get_settings
from monitoring.alerts import clear_alerts, list_alerts, update_alerts

#: The models drift is checked for (those the services log).
MODELS = ("credit-risk", "fraud", "anomaly", "intent", "ner", "categorizer", "spending", "advisor")

#: Seconds a check route waits for the result before answering 202 (under the 10 s request timeout).
WAIT_S = 5.0
#: Checks in progress in this process, by model: a second request joins the running one.
_RUNNING: dict[str, asyncio.Task] = {}

app = FastAPI(title="finbento monitoring", docs_url=None, redoc_url=None, openapi_url=None)


def require_admin(request: Request) -> None:
    """FastAPI dependency: the admin bearer token (see the module docstring).

    Raises:
        HTTPException: 403 when no token is configured, 401 when it is missing or wrong.
    """
    refusal = admin_refusal(request.headers.get("authorization", ""))
    if refusal is not None:
        status, why = refusal
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        raise HTTPException(status, why, headers=headers)


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


def _start(model: str, window: int) -> asyncio.Task:
    """The model's running check, or a new one in a worker thread."""
    task = _RUNNING.get(model)
    if task is None or task.done():
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(check, model, window))
        _RUNNING[model] = task
    return task


def _outcome(model: str, task: asyncio.Task) -> dict:
    """A finished check's answer (errors as ``checked: false`` with the reason)."""
    try:
        return task.result()
    except (LookupError, ValueError) as exc:
        return {"model": model, "checked": False, "reason": str(exc)}


def _running(model: str) -> dict:
    return {"model": model, "status": "running", "poll": f"/monitoring/drift/{model}"}


@app.post("/drift/check-all")
async def check_all(
    _: Admin, window: Annotated[int, Query(ge=30, le=100_000)] = 5000
) -> JSONResponse:
    """Check every model; one entry per model (errors reported, not raised); 202 if some run on."""
    tasks = {model: _start(model, window) for model in MODELS}
    await asyncio.wait(tasks.values(), timeout=WAIT_S)
    out = {m: _outcome(m, t) if t.done() else _running(m) for m, t in tasks.items()}
    return JSONResponse(out, status_code=200 if all(t.done() for t in tasks.values()) else 202)


@app.post("/drift/{model}/check")
async def check_one(
    model: str, _: Admin, window: Annotated[int, Query(ge=30, le=100_000)] = 5000
) -> JSONResponse:
    """Check one model's newest ``window`` logged predictions against its reference.

    Answers 200 with the result, 202 while it runs on, 409 if the served version has no
    reference sample.
    """
    task = _start(_known(model), window)
    await asyncio.wait({task}, timeout=WAIT_S)
    if not task.done():
        return JSONResponse(_running(model), status_code=202)
    try:
        return JSONResponse(task.result())
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
