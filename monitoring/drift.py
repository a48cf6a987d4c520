"""Drift checks: what a served model sees (current data) against what it learned from (reference).

:func:`check_drift` runs Evidently 0.7's ``DataDriftPreset`` on the numeric and categorical
columns, with Evidently's default test per column type and size: for numeric columns the K-S
p-value (reference of 1,000 rows or fewer) or the normed Wasserstein distance, for categorical ones
the chi-square / Z-test p-value (small data) or the Jensen-Shannon distance; a p-value drifts below
its threshold (0.05), a distance at or above it (0.1). Free text, datetimes and lists are skipped
and the result says so. The share of drifted features sets the level (``ok`` / ``warning`` /
``critical``) and, against Evidently's ``drift_share`` (0.5), the dataset drift.

:func:`save` keeps each check as ``<directory>/<model>/<UTC stamp>.html`` (Evidently's report) and
``.json`` (the :class:`DriftResult` summary), plus ``latest.json``; :func:`load_latest` reads it.
:func:`load_reference` fetches the reference sample every trainer logs with its MLflow run
(``reference/reference.parquet``, see ``trainers.tracking.log_reference``).
:func:`run_drift_check` puts them together for the scheduler: prediction log -> check -> gauges
-> saved report.

Evidently takes seconds to import, so it is imported inside :func:`check_drift` only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from monitoring.metrics import (
    DATASET_DRIFT,
    DRIFT_LEVEL,
    DRIFT_SCORE,
    DRIFT_SHARE,
    FEATURE_DRIFTED,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from finbento.settings import Settings

log = logging.getLogger(__name__)

Level = Literal["ok", "warning", "critical"]
LEVELS: tuple[Level, ...] = ("ok", "warning", "critical")  # ml_drift_level: the index
MIN_ROWS = 30
REFERENCE_ARTIFACT = "reference/reference.parquet"
#: Columns of the prediction log that are bookkeeping, not model inputs.
LOG_COLUMNS = ("model_version", "latency_ms", "ts")
_EXPORTED: dict[str, set[str]] = {}


class NothingToCompare(ValueError):
    """Neither a numeric or categorical feature nor a prediction column to compare."""


@dataclass
class FeatureDrift:
    """Drift of one column.

    Attributes:
        column_type: ``numerical`` or ``categorical``.
        method: Evidently's test, e.g. ``K-S p_value``, ``Wasserstein distance (normed)``.
        threshold: the test's threshold (p-value: drift below; distance: drift at or above).
        score: the p-value or distance.
        drifted: whether Evidently found drift.
    """

    column_type: str
    method: str
    threshold: float
    score: float
    drifted: bool


@dataclass
class DriftResult:
    """Summary of one drift check (JSON-serializable through :meth:`to_dict`).

    Attributes:
        model_name: the model checked.
        checked_at: UTC time of the check, ISO 8601.
        n_current: rows of current data.
        n_reference: rows of reference data.
        features: per compared feature, its drift.
        skipped: columns not compared, with the reason.
        n_drifted: how many features drifted.
        share_drifted: ``n_drifted / len(features)`` (0-1; 0 if no feature was compared).
        dataset_drift: ``share_drifted >= drift_share`` (Evidently's dataset drift).
        drift_share: Evidently's dataset-drift share used.
        level: ``critical`` if ``share_drifted >= critical``, ``warning`` if ``>= warning``,
            else ``ok``; with no comparable feature, ``warning`` if the prediction drifted.
        warning: warning threshold on the share.
        critical: critical threshold on the share.
        prediction: drift of the prediction column, if one was given.
        prediction_column: that column's name in the current data.
        model_version: the version checked, if the caller said.
        snapshot: Evidently's ``Snapshot`` (not serialized; None once loaded from disk).
    """

    model_name: str
    checked_at: str
    n_current: int
    n_reference: int
    features: dict[str, FeatureDrift]
    skipped: dict[str, str]
    n_drifted: int
    share_drifted: float
    dataset_drift: bool
    drift_share: float
    level: Level
    warning: float
    critical: float
    prediction: FeatureDrift | None = None
    prediction_column: str | None = None
    model_version: str | None = None
    snapshot: Any = field(default=None, repr=False, compare=False)

    @property
    def drifted_features(self) -> list[str]:
        """Names of the features that drifted."""
        return [name for name, f in self.features.items() if f.drifted]

    def to_dict(self) -> dict[str, Any]:
        """The summary as plain JSON types (without the snapshot)."""
        out = asdict(self)
        out.pop("snapshot")
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftResult:
        """Rebuild a result written by :meth:`to_dict` (extra keys are ignored)."""
        known = {f for f in cls.__dataclass_fields__ if f != "snapshot"}
        values = {k: v for k, v in data.items() if k in known}
        values["features"] = {k: FeatureDrift(**v) for k, v in data["features"].items()}
        if data.get("prediction"):
            values["prediction"] = FeatureDrift(**data["prediction"])
        return cls(**values)


def check_drift(
    model_name: str,
    current: pd.DataFrame,
    reference: pd.DataFrame,
    columns: list[str] | None = None,
    prediction_column: str | None = None,
    warning: float = 0.1,
    critical: float = 0.3,
    *,
    reference_prediction_column: str | None = None,
    model_version: str | None = None,
    drift_share: float = 0.5,
    min_rows: int = MIN_ROWS,
    export_metrics: bool = True,
) -> DriftResult:
    """Compare current data with reference data, per feature and overall.

    Column types are Evidently's inference on the reference column (floats numeric; integers
    categorical up to 10 distinct values, else numeric; strings categorical unless more than half
    are distinct, then free text), so both sides are compared as the same type; the prediction
    column's type is inferred on the current side. Evidently chooses each test on the reference
    size (up to 1,000 rows: p-value tests), so a 5,000-row reference gives distance tests.

    Args:
        model_name: model name, for the result and the metrics labels.
        current: what the model saw, e.g. :meth:`PredictionLog.read`; one row per prediction.
        reference: what it learned from, e.g. :func:`load_reference`.
        columns: features to compare; default every column of either frame except the
            prediction columns (log bookkeeping columns only in current are ignored; other
            columns missing on one side are reported as skipped).
        prediction_column: column of the model's output in ``current`` (e.g.
            ``prediction.probability``); its drift is reported apart and not in the share.
        warning: share of drifted features from which the level is ``warning`` (0-1).
        critical: share from which the level is ``critical`` (0-1, >= ``warning``).
        reference_prediction_column: the matching column in ``reference`` (a score or label
            column; compare like with like); default ``prediction_column``.
        model_version: recorded in the result.
        drift_share: Evidently's share of drifted features for dataset drift.
        min_rows: fewest rows accepted on each side.
        export_metrics: set ``ml_drift_score``, ``ml_feature_drifted``, ``ml_drift_share`` and
            ``ml_dataset_drift`` for ``model_name``.

    Returns:
        the :class:`DriftResult`, with Evidently's snapshot in ``snapshot``.

    Raises:
        ValueError: fewer than ``min_rows`` rows on either side, thresholds out of order, a
            prediction column missing, or (:class:`NothingToCompare`) nothing left to compare.
    """
    if not 0 <= warning <= critical <= 1:
        raise ValueError(f"need 0 <= warning <= critical <= 1, got {warning}, {critical}")
    for side, frame in (("current", current), ("reference", reference)):
        if len(frame) < min_rows:
            raise ValueError(
                f"{model_name}: {len(frame)} {side} rows, a drift check needs at least {min_rows}"
            )
    ref_pred = reference_prediction_column or prediction_column
    if prediction_column is not None:
        if prediction_column not in current:
            raise ValueError(f"prediction column {prediction_column!r} not in current data")
        if ref_pred not in reference:
            raise ValueError(f"prediction column {ref_pred!r} not in reference data")

    excluded = {prediction_column, ref_pred} - {None}
    if columns is None:
        names = list(dict.fromkeys([*reference.columns, *current.columns]))
        names = [c for c in names if c not in excluded and not _log_only(c, reference)]
    else:
        names = list(columns)
    cur_cols: dict[str, pd.Series] = {}
    ref_cols: dict[str, pd.Series] = {}
    types: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for name in names:
        if name not in current:
            skipped[name] = "not in current data"
            continue
        if name not in reference:
            skipped[name] = "not in reference data"
            continue
        kind, cur, ref, reason = _prepare(current[name], reference[name])
        if reason:
            skipped[name] = reason
            continue
        cur_cols[name], ref_cols[name], types[name] = cur, ref, kind

    pred_kind = None
    if prediction_column is not None:
        pred_kind, cur, ref, reason = _prepare(
            current[prediction_column], reference[ref_pred], infer_from_current=True
        )
        if reason:
            raise ValueError(f"prediction column {prediction_column!r}: {reason}")
        cur_cols[prediction_column], ref_cols[prediction_column] = cur, ref
        types[prediction_column] = pred_kind
    features = [n for n in cur_cols if n != prediction_column]
    if not features and prediction_column is None:
        raise NothingToCompare(
            f"{model_name}: no numeric or categorical column to compare: {skipped}"
        )

    snapshot, drift = _run_evidently(
        pd.DataFrame(cur_cols), pd.DataFrame(ref_cols), types, features, prediction_column,
        drift_share,
    )  # fmt: skip
    per_feature = {n: drift[n] for n in features}
    n_drifted = sum(f.drifted for f in per_feature.values())
    share = n_drifted / len(per_feature) if per_feature else 0.0
    prediction = drift.get(prediction_column) if prediction_column else None
    if not per_feature:
        level: Level = "warning" if prediction and prediction.drifted else "ok"
    else:
        level = "critical" if share >= critical else "warning" if share >= warning else "ok"
    result = DriftResult(
        model_name=model_name,
        checked_at=datetime.now(UTC).isoformat(),
        n_current=len(current),
        n_reference=len(reference),
        features=per_feature,
        skipped=skipped,
        n_drifted=n_drifted,
        share_drifted=share,
        dataset_drift=bool(per_feature) and share >= drift_share,
        drift_share=drift_share,
        level=level,
        warning=warning,
        critical=critical,
        prediction=prediction,
        prediction_column=prediction_column,
        model_version=None if model_version is None else str(model_version),
        snapshot=snapshot,
    )
    if export_metrics:
        export(result)
    return result


def run_drift_check(
    settings: Settings,
    model_name: str,
    window: int = 5_000,
    *,
    directory: str | Path | None = None,
    prediction_log: Any = None,
    min_rows: int = MIN_ROWS,
) -> DriftResult | None:
    """The scheduler's drift check of one model: prediction log vs the served version's reference.

    Reads the newest ``window`` records of the prediction log, keeps those of the newest
    ``model_version`` among them (the version serving now), compares them with that version's
    reference sample (:func:`load_reference`), sets the gauges and saves the report
    (:func:`save`). A ``prediction.*`` column that the reference also has is checked as the
    prediction. Thresholds come from ``settings.drift_shares(model_name)``
    (``FINBENTO_DRIFT_THRESHOLDS`` per model, else ``drift_warning_share`` and
    ``drift_critical_share``).

    Args:
        settings: finbento settings (Redis, MLflow store, state directory).
        model_name: model name.
        window: newest prediction-log records read (rows).
        directory: reports root; default ``settings.drift_reports_dir`` if set, else
            ``<state_dir>/drift``.
        prediction_log: a :class:`~monitoring.prediction_log.PredictionLog`; default the
            process-wide one.
        min_rows: fewest current rows checked.

    Returns:
        the result, or None when there is nothing to check: fewer than ``min_rows`` records of the
        serving version, or no column the check can compare (e.g. free text only).

    Raises:
        LookupError: the version or its reference sample is not in the MLflow store.
    """
    if prediction_log is None:
        from monitoring.prediction_log import get_prediction_log

        prediction_log = get_prediction_log(settings)
    current = prediction_log.read(model_name, window)
    if current.empty:
        log.info("%s: no prediction-log records, nothing to check", model_name)
        return None
    version = str(current["model_version"].iloc[-1])
    current = current[current["model_version"] == version].reset_index(drop=True)
    if len(current) < min_rows:
        log.info("%s: %d records of version %s, fewer than %d: not checked", model_name,
                    len(current), version, min_rows)  # fmt: skip
        return None
    reference = load_reference(settings, model_name, version)
    prediction = next(
        (c for c in current.columns if c.startswith("prediction.") and c in reference), None
    )
    try:
        result = check_drift(
            model_name, current, reference, prediction_column=prediction,
            warning=settings.drift_shares(model_name)[0],
            critical=settings.drift_shares(model_name)[1],
            model_version=version, min_rows=min_rows,
        )  # fmt: skip
    except NothingToCompare as exc:
        log.info("%s", exc)
        return None
    root = directory or settings.drift_reports_dir or settings.state_dir / "drift"
    save(result, result.snapshot, root)
    return result


def _log_only(name: str, reference: pd.DataFrame) -> bool:
    """A prediction-log bookkeeping column that the reference lacks."""
    return name not in reference and (name in LOG_COLUMNS or name.startswith("prediction."))


def _prepare(
    cur: pd.Series, ref: pd.Series, infer_from_current: bool = False
) -> tuple[str, pd.Series, pd.Series, str | None]:
    """The type of a column (inferred on the reference side unless told), both sides cast alike.

    Returns ``(type, current, reference, None)``, or a reason to skip as the last item.
    """
    from evidently import ColumnType
    from evidently.core.datasets import infer_column_type

    if ref.notna().sum() == 0:
        return "", cur, ref, "no values in reference data"
    if cur.notna().sum() == 0:
        return "", cur, ref, "no values in current data"
    kind = infer_column_type((cur if infer_from_current else ref).dropna())
    if kind == ColumnType.Numerical:
        cur = pd.to_numeric(cur, errors="coerce").astype(float)
        ref = pd.to_numeric(ref, errors="coerce").astype(float)
        if cur.notna().sum() == 0 or ref.notna().sum() == 0:
            return "", cur, ref, "numeric on one side only"
        return "numerical", cur, ref, None
    if kind == ColumnType.Categorical:
        both_numeric = pd.api.types.is_numeric_dtype(ref) and pd.api.types.is_numeric_dtype(cur)
        if pd.api.types.is_bool_dtype(ref) or pd.api.types.is_bool_dtype(cur):
            both_numeric = False
        if both_numeric:  # 1 and 1.0 are one category
            return "categorical", cur.astype(float), ref.astype(float), None
        return "categorical", _as_str(cur), _as_str(ref), None
    reasons = {
        ColumnType.Text: "free text (more than half the values distinct): not compared",
        ColumnType.Datetime: "datetime: not compared",
        ColumnType.List: "list values: not compared",
    }
    return "", cur, ref, reasons.get(kind, f"unsupported type ({ref.dtype}): not compared")


def _as_str(values: pd.Series) -> pd.Series:
    return values.map(lambda v: v if pd.isna(v) else str(v)).astype(object)


def _run_evidently(
    cur: pd.DataFrame,
    ref: pd.DataFrame,
    types: dict[str, str],
    features: list[str],
    prediction_column: str | None,
    drift_share: float,
) -> tuple[Any, dict[str, FeatureDrift]]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(
        numerical_columns=[c for c, t in types.items() if t == "numerical"],
        categorical_columns=[c for c, t in types.items() if t == "categorical"],
    )
    metrics: list[Any] = []
    if features:
        metrics.append(DataDriftPreset(columns=features, drift_share=drift_share))
    if prediction_column is not None:
        metrics.append(ValueDrift(column=prediction_column))
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant columns in correlations
        snapshot = Report(metrics, include_tests=True).run(
            Dataset.from_pandas(cur, data_definition=definition),
            Dataset.from_pandas(ref, data_definition=definition),
        )
    summary = snapshot.dict()
    failed = {
        t["metric_config"]["metric_id"]: t["status"] == "FAIL"
        for t in summary["tests"]
        if t.get("id") == "drift"
    }
    out: dict[str, FeatureDrift] = {}
    for metric in summary["metrics"]:
        config = metric["config"]
        if not config.get("type", "").endswith(":ValueDrift"):
            continue
        score, method = float(metric["value"]), str(config["method"])
        threshold = float(config["threshold"])
        drifted = failed.get(metric["id"])
        if drifted is None:  # no test result: decide as Evidently does
            drifted = score < threshold if "p_value" in method else score >= threshold
        name = config["column"]
        out[name] = FeatureDrift(types[name], method, threshold, score, bool(drifted))
    return snapshot, out


def export(result: DriftResult) -> None:
    """Set the drift gauges of ``result.model_name`` (and remove features no longer checked)."""
    model = result.model_name
    scores = dict(result.features)
    if result.prediction is not None and result.prediction_column:
        scores[result.prediction_column] = result.prediction
    for stale in _EXPORTED.get(model, set()) - set(scores):
        for gauge in (DRIFT_SCORE, FEATURE_DRIFTED):
            with contextlib.suppress(KeyError):
                gauge.remove(model, stale)
    for name, drift in scores.items():
        DRIFT_SCORE.labels(model, name).set(drift.score)
        FEATURE_DRIFTED.labels(model, name).set(int(drift.drifted))
    _EXPORTED[model] = set(scores)
    DRIFT_SHARE.labels(model).set(result.share_drifted)
    DATASET_DRIFT.labels(model).set(int(result.dataset_drift))
    DRIFT_LEVEL.labels(model).set(LEVELS.index(result.level))


# -- reports on disk ----------------------------------------------------------------------------


def _safe(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", model)


def save(result: DriftResult, snapshot: Any, directory: str | Path) -> Path:
    """Write a check's HTML report and JSON summary, and point ``latest.json`` at it.

    Files: ``<directory>/<model>/<YYYYmmddTHHMMSSZ>.html`` (Evidently's report; skipped when
    there is no snapshot), ``<stamp>.json`` (:meth:`DriftResult.to_dict` plus ``html``, the report's
    file name) and ``latest.json`` (the same summary, replaced atomically).

    Args:
        result: the check.
        snapshot: Evidently's ``Snapshot``; ``result.snapshot`` if None.
        directory: root folder of the reports (created if needed).

    Returns:
        the path of the ``<stamp>.json`` summary.

    Raises:
        OSError: the files cannot be written.
    """
    folder = Path(directory) / _safe(result.model_name)
    folder.mkdir(parents=True, exist_ok=True)
    when = datetime.fromisoformat(result.checked_at).astimezone(UTC)
    stamp = base = when.strftime("%Y%m%dT%H%M%SZ")
    n = 0
    while (folder / f"{stamp}.json").exists():
        n += 1
        stamp = f"{base}-{n}"
    snapshot = snapshot if snapshot is not None else result.snapshot
    summary = result.to_dict()
    summary["html"] = None
    if snapshot is not None:
        snapshot.save_html(str(folder / f"{stamp}.html"))
        summary["html"] = f"{stamp}.html"
    text = json.dumps(summary, indent=2)
    path = folder / f"{stamp}.json"
    path.write_text(text, encoding="utf-8")
    with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".tmp", delete=False) as tmp:
        tmp.write(text)
    os.replace(tmp.name, folder / "latest.json")
    return path


def load_latest(directory: str | Path, model_name: str) -> DriftResult | None:
    """The last saved check of ``model_name`` (from ``latest.json``), or None if there is none.

    Raises:
        ValueError: ``latest.json`` is not a drift summary.
    """
    path = Path(directory) / _safe(model_name) / "latest.json"
    if not path.exists():
        return None
    try:
        return DriftResult.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a drift summary: {exc}") from exc


# -- reference data -----------------------------------------------------------------------------


def load_reference(
    source: MlflowClient | Settings, model_name: str, version: str | int
) -> pd.DataFrame:
    """The training-data sample logged with a registered model version's MLflow run.

    Args:
        source: an ``MlflowClient``, or settings whose ``tracking_uri`` names the store.
        model_name: registered model name.
        version: version number, or an alias such as ``champion``.

    Returns:
        the ``reference/reference.parquet`` artifact (up to 5,000 training rows, the trainer's
        columns).

    Raises:
        LookupError: the version, its run or its reference artifact does not exist.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from finbento.log_privacy import mask_url

    if isinstance(source, MlflowClient):
        client = source
    else:
        client = MlflowClient(tracking_uri=source.tracking_uri, registry_uri=source.tracking_uri)
    version = str(version)
    try:
        mv = (
            client.get_model_version(model_name, version)
            if version.isdigit()
            else client.get_model_version_by_alias(model_name, version)
        )
    except MlflowException as exc:  # its message may quote the tracking URI: no password
        raise LookupError(f"{model_name} version {version}: {mask_url(exc.message)}") from exc
    if not mv.run_id:
        raise LookupError(f"{model_name} version {mv.version} has no MLflow run")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(mv.run_id, REFERENCE_ARTIFACT, tmp)
        except (MlflowException, OSError) as exc:
            raise LookupError(
                f"{model_name} version {mv.version}: no {REFERENCE_ARTIFACT} in run {mv.run_id}"
            ) from exc
        return pd.read_parquet(path)
