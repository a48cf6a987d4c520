"""Drift checks on the shipped Taiwan credit-default data (Evidently 0.7)."""

import json
import uuid

import mlflow
import numpy as np
import pandas as pd
import pytest
from prometheus_client import REGISTRY

from monitoring.drift import (
    DriftResult,
    check_drift,
    load_latest,
    load_reference,
    run_drift_check,
    save,
)
from monitoring.prediction_log import PredictionLog
from tests.conftest import ROOT

BILLS = [f"BILL_AMT{i}" for i in range(1, 7)]
PROFILE = ["LIMIT_BAL", "SEX", "EDUCATION", "MARRIAGE", "AGE"]


@pytest.fixture(scope="module")
def halves() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two random halves of 6,000 real rows (distance tests: more than 1,000 rows a side)."""
    df = pd.read_csv(ROOT / "data" / "taiwan_credit_default" / "UCI_Credit_Card.csv")
    df = df.drop(columns=["ID"]).sample(6000, random_state=7).reset_index(drop=True)
    return df.iloc[:3000].reset_index(drop=True), df.iloc[3000:].reset_index(drop=True)


def model_name() -> str:
    return f"test-{uuid.uuid4().hex[:6]}"


def gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_random_halves_do_not_drift(halves):
    current, reference = halves
    name = model_name()
    result = check_drift(name, current, reference)
    assert result.level == "ok"
    assert not result.dataset_drift
    assert result.drifted_features == []
    assert "default.payment.next.month" in result.features  # the label is a column like others
    assert result.n_current == 3000 and result.n_reference == 3000
    assert result.features["LIMIT_BAL"].column_type == "numerical"
    assert result.features["SEX"].column_type == "categorical"
    assert result.features["LIMIT_BAL"].method == "Wasserstein distance (normed)"
    assert gauge("ml_dataset_drift", model_name=name) == 0


def test_scaled_bill_amounts_drift(halves):
    current, reference = halves
    current = current.copy()
    current[BILLS] *= 3
    name = model_name()
    result = check_drift(name, current, reference, columns=PROFILE + BILLS)
    assert sorted(result.drifted_features) == BILLS
    assert result.share_drifted == pytest.approx(6 / 11)
    assert result.level == "critical" and result.dataset_drift
    # the share agrees with Evidently's own DriftedColumnsCount
    count = next(m for m in result.snapshot.dict()["metrics"] if "DriftedColumnsCount" in
                 m["metric_name"])  # fmt: skip
    assert count["value"]["share"] == pytest.approx(result.share_drifted)
    # gauges
    assert gauge("ml_dataset_drift", model_name=name) == 1
    assert gauge("ml_drift_share", model_name=name) == pytest.approx(6 / 11)
    assert gauge("ml_feature_drifted", model_name=name, feature="BILL_AMT1") == 1
    assert gauge("ml_feature_drifted", model_name=name, feature="AGE") == 0
    assert gauge("ml_drift_score", model_name=name, feature="BILL_AMT1") == pytest.approx(
        result.features["BILL_AMT1"].score
    )
    # a later check on fewer features removes the stale labels
    check_drift(name, current, reference, columns=PROFILE)
    assert gauge("ml_drift_score", model_name=name, feature="BILL_AMT1") is None
    assert gauge("ml_dataset_drift", model_name=name) == 0


def test_levels_follow_the_share(halves):
    current, reference = halves
    current = current.copy()
    current["BILL_AMT1"] *= 3
    cols = PROFILE + BILLS[:1]  # 1 of 6 drifted: 0.17
    assert check_drift("t", current, reference, columns=cols, export_metrics=False).level == (
        "warning"
    )
    relaxed = check_drift("t", current, reference, columns=cols, warning=0.2, critical=0.5,
                          export_metrics=False)  # fmt: skip
    assert relaxed.level == "ok"


def test_prediction_drift_against_reference_scores(halves):
    current, reference = halves
    rng = np.random.default_rng(0)
    current = current.assign(**{"prediction.probability": rng.beta(2, 5, len(current))})
    reference = reference.assign(score=rng.beta(2, 5, len(reference)))
    same = check_drift("t", current, reference, columns=PROFILE,
                       prediction_column="prediction.probability",
                       reference_prediction_column="score", export_metrics=False)  # fmt: skip
    assert same.prediction is not None and not same.prediction.drifted
    assert "prediction.probability" not in same.features and "score" not in same.features
    shifted = current.assign(**{"prediction.probability": rng.beta(5, 2, len(current))})
    moved = check_drift("t", shifted, reference, columns=PROFILE,
                        prediction_column="prediction.probability",
                        reference_prediction_column="score", export_metrics=False)  # fmt: skip
    assert moved.prediction.drifted and moved.prediction.column_type == "numerical"
    assert moved.level == "ok"  # the level follows the features only
    with pytest.raises(ValueError, match="not in reference"):
        check_drift("t", current, reference, prediction_column="prediction.probability")


def test_skips_text_and_one_sided_columns(halves):
    current, reference = halves
    current = current[PROFILE].assign(
        note=[f"paid rent {i}" for i in range(len(current))],
        model_version="3", latency_ms=1.0, ts=pd.Timestamp("2026-01-01", tz="UTC"),
        extra=1.0,
    )  # fmt: skip
    reference = reference[PROFILE].assign(note=[f"bought food {i}" for i in range(len(reference))])
    reference["default.payment.next.month"] = 0
    result = check_drift("t", current, reference, export_metrics=False)
    assert result.skipped == {
        "note": "free text (more than half the values distinct): not compared",
        "default.payment.next.month": "not in current data",
        "extra": "not in reference data",
    }  # log bookkeeping columns (model_version, latency_ms, ts) are ignored, not reported
    assert set(result.features) == set(PROFILE)


def test_categorical_values_match_across_types(halves):
    current, reference = halves
    current = current[PROFILE].astype({"SEX": float})  # e.g. read back from JSON with NaNs
    result = check_drift("t", current, reference[PROFILE], export_metrics=False)
    assert result.features["SEX"].column_type == "categorical"
    assert not result.features["SEX"].drifted


def test_too_few_rows(halves):
    current, reference = halves
    with pytest.raises(ValueError, match="at least 30"):
        check_drift("t", current.head(29), reference)
    with pytest.raises(ValueError, match="reference rows"):
        check_drift("t", current, reference.head(10))
    with pytest.raises(ValueError, match="no numeric or categorical"):
        check_drift("t", current, reference, columns=["nope"])


def test_save_and_load_latest(halves, tmp_path):
    current, reference = halves
    name = "credit-risk"
    result = check_drift(name, current, reference, columns=PROFILE, model_version="7",
                         export_metrics=False)  # fmt: skip
    path = save(result, result.snapshot, tmp_path)
    folder = tmp_path / name
    assert path.parent == folder and path.suffix == ".json"
    html = path.with_suffix(".html")
    assert html.stat().st_size > 10_000 and (folder / "latest.json").exists()
    second = save(result, None, tmp_path)  # same second: a distinct name
    assert second != path and second.exists()
    summary = json.loads((folder / "latest.json").read_text())
    assert summary["level"] == "ok" and summary["html"] == second.with_suffix(".html").name
    loaded = load_latest(tmp_path, name)
    assert isinstance(loaded, DriftResult) and loaded == result
    assert loaded.snapshot is None and loaded.model_version == "7"
    assert load_latest(tmp_path, "nobody") is None


@pytest.mark.integration
def test_load_reference_and_run_the_scheduled_check(settings, halves, tmp_path):
    from trainers import registry, tracking

    client = registry.configure(settings)
    data = halves[1].head(200)
    with mlflow.start_run() as run:
        tracking.log_reference(data)
    client.create_registered_model("drift-test")
    mv = client.create_model_version("drift-test", f"runs:/{run.info.run_id}/reference",
                                     run_id=run.info.run_id)  # fmt: skip
    client.set_registered_model_alias("drift-test", "champion", mv.version)
    ref = load_reference(client, "drift-test", mv.version)
    cols = list(data.columns)
    pd.testing.assert_frame_equal(
        ref.sort_values(cols).reset_index(drop=True), data.sort_values(cols).reset_index(drop=True)
    )
    assert len(load_reference(settings, "drift-test", "champion")) == 200
    with pytest.raises(LookupError):
        load_reference(client, "drift-test", "99")
    with pytest.raises(LookupError):
        load_reference(client, "no-such-model", "1")

    # the scheduler's check: the prediction log (file fallback here) vs the reference
    plog = PredictionLog("redis://127.0.0.1:1/0", "t", tmp_path / "predlog", linger_s=0.0)
    rows = data[PROFILE].head(120).to_dict("records")  # part of the reference: no drift
    for row in rows[:20]:
        plog.record("drift-test", "0", row, {"probability": 0.2}, 1.0)  # an older version
    for row in rows[20:]:
        plog.record("drift-test", mv.version, row, {"probability": 0.2}, 1.0)
    assert plog.flush(5)
    result = run_drift_check(settings, "drift-test", 1000, prediction_log=plog,
                             directory=tmp_path / "drift")  # fmt: skip
    assert result is not None and result.level == "ok"
    assert result.model_version == str(mv.version) and result.n_current == 100
    assert set(result.features) == set(PROFILE)
    assert result.skipped == {c: "not in current data" for c in data.columns if c not in PROFILE}
    assert load_latest(tmp_path / "drift", "drift-test") == result
    assert run_drift_check(settings, "drift-test", 1000, prediction_log=plog,
                           min_rows=101) is None  # fmt: skip
    assert run_drift_check(settings, "nobody", 1000, prediction_log=plog) is None
    plog.close(2)
