"""Open drift alerts: which models' latest check was at warning or critical, until acknowledged.

Kept as one JSON file, ``<drift reports dir>/alerts.json`` (``{model: alert}``), beside the
reports, so the scheduler that runs the checks and the API that shows them share it through the
state directory. An alert is raised (or replaced) by every check at warning or critical, cleared by
a check back at ok, and removed by :func:`clear_alerts` (``DELETE /monitoring/drift/alerts``).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from monitoring.drift import DriftResult

ALERTS_FILE = "alerts.json"


def _path(directory: Path) -> Path:
    return Path(directory) / ALERTS_FILE


def list_alerts(directory: Path) -> dict[str, dict]:
    """The open alerts by model (empty if none).

    Each is ``{"level", "share_drifted", "drifted_features", "checked_at", "model_version"}``.
    """
    path = _path(directory)
    return json.loads(path.read_text()) if path.exists() else {}


def _write(directory: Path, alerts: dict[str, dict]) -> None:
    Path(directory).mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(alerts, f, indent=1)
    os.replace(tmp, _path(directory))  # atomic: readers never see half a file


def update_alerts(directory: Path, result: DriftResult) -> dict | None:
    """Raise, replace or clear ``result.model_name``'s alert after a check.

    Returns:
        the alert raised, or None when the check was ok (any open alert is cleared).
    """
    alerts = list_alerts(directory)
    if result.level == "ok":
        alerts.pop(result.model_name, None)
        _write(directory, alerts)
        return None
    alert = {"level": result.level, "share_drifted": result.share_drifted,
             "drifted_features": sorted(result.drifted_features),
             "checked_at": result.checked_at, "model_version": result.model_version}  # fmt: skip
    alerts[result.model_name] = alert
    _write(directory, alerts)
    return alert


def clear_alerts(directory: Path, model: str | None = None) -> int:
    """Acknowledge (remove) one model's alert, or all. Returns how many were removed."""
    alerts = list_alerts(directory)
    removed = len(alerts) if model is None else int(model in alerts)
    _write(directory, {} if model is None else {m: a for m, a in alerts.items() if m != model})
    return removed
