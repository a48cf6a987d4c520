"""The served Bento over real HTTP: train -> import -> bentoml build -> bentoml serve."""

import concurrent.futures as cf
import contextlib
import json
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import redis

from finbento import bentos
from finbento.features.credit_risk import RAW_COLUMNS
from finbento.serving import free_port, start_bento_server, stop_bento_server
from monitoring.prediction_log import PredictionLog
from tests.conftest import ROOT, applicant_dict

pytestmark = pytest.mark.integration
ADMIN = "test-admin-token"
PREFIX = f"finbento-test-{uuid.uuid4().hex[:8]}"
REDIS = "redis://127.0.0.1:6379/0"
INTS = {"sex", "education", "marriage", "age", "pay_0", "pay_2", "pay_3", "pay_4", "pay_5", "pay_6"}


@pytest.fixture(scope="module")
def served(trained, tmp_path_factory):
    tag = bentos.build("all", trained.tags, trained.versions)
    assert bentos.build("all", trained.tags, trained.versions) == tag  # same inputs: no-op
    port = free_port()
    log = tmp_path_factory.mktemp("logs") / "serve.log"
    env = {
        "FINBENTO_ADMIN_TOKEN": ADMIN,
        "FINBENTO_REDIS_PREFIX": PREFIX,
        "FINBENTO_STATE_DIR": str(trained.settings.state_dir),
    }  # the trained models' MLflow
    proc = start_bento_server(tag, port, env, log_file=log)
    yield {
        "url": f"http://127.0.0.1:{port}",
        "version": trained.versions["credit-risk"],
        "tag": tag,
        "model": trained.models["credit-risk"],
        "proc": proc,
        "trained": trained,
    }
    stop_bento_server(proc)
    with contextlib.suppress(redis.exceptions.RedisError):
        PredictionLog(REDIS, PREFIX).clear()


def post(served, path, body, **kw):
    return httpx.post(
        served["url"] + path,
        content=json.dumps(body),
        headers={"Content-Type": "application/json"},
        timeout=30,
        **kw,
    )


def real_rows(n: int) -> list[dict]:
    df = pd.read_csv(ROOT / "data" / "taiwan_credit_default" / "UCI_Credit_Card.csv", nrows=n)
    df.columns = [c.lower() for c in df.columns]
    return [
        {c: int(r[c]) if c in INTS else float(r[c]) for c in RAW_COLUMNS} for _, r in df.iterrows()
    ]


def test_bento_pins_the_model_and_is_labelled_with_its_version(served):
    import bentoml

    bento = bentoml.get(served["tag"])
    assert bento.info.labels["credit-risk"] == served["version"]
    packaged = sorted(str(m.tag) for svc in bento.info.services for m in svc.models)
    assert packaged == sorted(served["trained"].tags.values())
    assert bento.info.args["credit_risk_model"] == str(served["model"].tag)
    assert (
        served["tag"]
        .split(":")[1]
        .startswith(
            "ad{advisor}-an{anomaly}-ca{categorizer}-cr{credit-risk}-fr{fraud}-in{intent}-ne{ner}-"
            "re{recommender}-sp{spending}-".format(**served["trained"].versions)
        )
    )
    labels = served["model"].info.labels
    assert labels["mlflow_version"] == served["version"] and "test_roc_auc" in labels


def test_single_prediction(served):
    r = post(served, "/predict/credit-risk", {"applicant": applicant_dict()})
    assert r.status_code == 200, r.text
    p = r.json()
    assert 0 <= p["default_probability"] <= 1
    assert p["risk_score"] == round(100 * p["default_probability"])
    assert p["risk_band"] == (
        "high" if p["risk_score"] >= 50 else "medium" if p["risk_score"] >= 20 else "low"
    )
    assert p["model"] == "credit-risk" and p["model_version"] == served["version"]
    assert 1 <= len(p["reasons"]) <= 3
    contributions = [x["contribution"] for x in p["reasons"]]
    assert all(c > 0 for c in contributions) and contributions == sorted(contributions)[::-1]


def test_batch_keeps_input_order_and_matches_single_calls(served):
    rows = real_rows(60)
    r = post(served, "/predict/credit-risk/batch", {"applicants": rows})
    assert r.status_code == 200
    batch = [p["default_probability"] for p in r.json()["predictions"]]
    assert len(batch) == 60 and len(set(batch)) > 30
    for i in (0, 17, 59):
        single = post(served, "/predict/credit-risk", {"applicant": rows[i]}).json()
        assert single["default_probability"] == pytest.approx(batch[i], abs=1e-6)


def test_batch_of_1000_is_accepted_and_1001_refused(served):
    rows = real_rows(1000)
    assert (
        len(post(served, "/predict/credit-risk/batch", {"applicants": rows}).json()["predictions"])
        == 1000
    )
    labels = {"model_name": "credit-risk", "error_type": "invalid_input"}
    before = metric(served, "ml_errors_total", **labels)
    r = post(served, "/predict/credit-risk/batch", {"applicants": [*rows, rows[0]]})
    assert r.status_code == 422, r.text
    assert r.json() == {
        "error": "applicants: at most 1000 items, got 1001",
        "detail": [
            {"loc": ["applicants"], "msg": "at most 1000 items, got 1001", "type": "too_long"}
        ],
    }
    assert metric(served, "ml_errors_total", **labels) - before == 1  # the caller's error


#: batch route -> (field, most items); every other batch route takes 1,000.
BATCHES = {
    "/predict/credit-risk/batch": ("applicants", 1000),
    "/transactions": ("transactions", 1000),
    "/predict/fraud/batch": ("transactions", 1000),
    "/predict/anomaly/batch": ("transactions", 1000),
    "/feedback/fraud": ("labels", 1000),
    "/predict/intent/batch": ("queries", 256),
    "/predict/ner/batch": ("texts", 1000),
    "/predict/category/batch": ("transactions", 1000),
}


@pytest.mark.parametrize("path", list(BATCHES))
def test_every_batch_route_answers_422_for_an_empty_or_oversized_batch(served, path):
    field, most = BATCHES[path]
    cases = [([{}] * (most + 1), f"at most {most} items, got {most + 1}", "too_long"),
             ([], "at least 1 item, got 0", "too_short")]  # fmt: skip
    for items, rule, kind in cases:
        r = post(served, path, {field: items})
        assert r.status_code == 422, r.text
        assert r.json()["detail"] == [{"loc": [field], "msg": rule, "type": kind}]
    assert post(served, path, {field: [{}]}).status_code == 400  # a bad item stays a 400


BAD = [
    ({"applicant": applicant_dict(age=12)}, ["applicant", "age"], "greater_than_equal"),
    ({"applicant": applicant_dict(sex="female")}, ["applicant", "sex"], "int_type"),
    ({"applicant": applicant_dict(pay_0=11)}, ["applicant", "pay_0"], "less_than_equal"),
    ({"applicant": applicant_dict(pay_1=0)}, ["applicant", "pay_1"], "extra_forbidden"),
    (
        {"applicant": {k: v for k, v in applicant_dict().items() if k != "limit_bal"}},
        ["applicant", "limit_bal"],
        "missing",
    ),
    ({}, ["applicant"], "missing"),
]


@pytest.mark.parametrize(("body", "loc", "kind"), BAD)
def test_bad_input_is_a_400_naming_the_field(served, body, loc, kind):
    path = "/predict/credit-risk/batch" if "applicants" in body else "/predict/credit-risk"
    r = post(served, path, body)
    assert r.status_code == 400
    err = r.json()["detail"][0]
    assert err["loc"] == loc and err["type"] == kind and err["msg"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"applicant": {"limit_bal": NaN',
        b"not json",
        b"[1, 2]",
        b'{"applicant": {"limit_bal": 1e999}}',
    ],
)
def test_malformed_bodies_are_400(served, raw):
    r = httpx.post(
        served["url"] + "/predict/credit-risk",
        content=raw,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 400, r.text


def test_nan_in_a_batch_row_names_the_row_and_field(served):
    second = json.dumps(applicant_dict()).replace('"bill_amt4": 30000.0', '"bill_amt4": NaN')
    body = f'{{"applicants": [{json.dumps(applicant_dict())}, {second}]}}'
    r = httpx.post(
        served["url"] + "/predict/credit-risk/batch",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 400
    assert r.json()["detail"][0]["loc"] == ["applicants", 1, "bill_amt4"]


def test_concurrent_load_gets_no_errors_and_server_stays_up(served):
    """Regression: BentoML >= 1.4.31 dropped in-flight calls between services (500s). Concurrent
    requests are scored together in the API worker (services/coalesce.py): each still gets the
    answer for its own applicant (checked against the model scored here, rows never seen by the
    prediction cache)."""
    from finbento.credit_risk import CreditRiskScorer
    from finbento.features.credit_risk import Applicant, raw_matrix

    offset = uuid.uuid4().int % 10_000  # new rows each run: cache misses, so really scored
    rows = [{**r, "pay_amt1": r["pay_amt1"] + offset + 0.5} for r in real_rows(300)]
    scorer = CreditRiskScorer.load(Path(served["model"].path))
    expected = scorer.score(raw_matrix([Applicant(**r) for r in rows]))[:, 0]
    with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=32)) as client:

        def call(i):
            r = client.post(served["url"] + "/predict/credit-risk", json={"applicant": rows[i]})
            return r.status_code, r.json().get("default_probability")

        with cf.ThreadPoolExecutor(32) as pool:
            answers = list(pool.map(call, range(300)))
    codes = [c for c, _ in answers]
    assert codes.count(200) == 300, {c: codes.count(c) for c in set(codes)}
    got = np.array([p for _, p in answers])
    assert np.allclose(got, expected, atol=1e-6) and len(set(got.round(6))) > 100
    assert served["proc"].poll() is None
    assert httpx.get(served["url"] + "/readyz").status_code == 200


def test_metrics_endpoint_reports_requests(served):
    text = httpx.get(served["url"] + "/metrics").text
    assert "bentoml_service_request_total" in text and 'endpoint="/predict/credit-risk"' in text
    assert np.isfinite(len(text))


def test_risk_bundle_builds_its_own_bento_with_the_same_models(served):
    import bentoml

    tag = bentos.build("risk", served["trained"].tags, served["trained"].versions)
    bento = bentoml.get(tag)
    assert tag.startswith("finbento-risk:an") and bento.info.labels["bundle"] == "risk"
    assert bento.info.entry_service == "finbento-risk"
    routes = {r["route"] for r in bento.info.schema["routes"]}
    assert routes >= {
        "/predict/credit-risk",
        "/predict/credit-risk/batch",
        "/predict/fraud",
        "/predict/fraud/batch",
        "/predict/anomaly",
        "/predict/anomaly/batch",
        "/transactions",
        "/feedback/fraud",
    }
    assert bentos.latest_bento("risk") == tag


def admin(served, method, path, token=ADMIN, **kw):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, served["url"] + "/monitoring" + path, headers=headers,
                         timeout=120, **kw)  # fmt: skip


def test_drift_routes_need_the_admin_token(served):
    assert admin(served, "POST", "/drift/credit-risk/check", token=None).status_code == 401
    assert admin(served, "GET", "/drift/alerts", token="wrong").status_code == 401
    assert admin(served, "POST", "/drift/no-such-model/check").status_code == 404


def test_logged_traffic_drifts_when_amounts_shift_and_raises_an_alert(served):
    try:
        redis.Redis.from_url(REDIS).ping()
    except redis.exceptions.RedisError as exc:
        pytest.skip(f"no Redis at 127.0.0.1:6379: {exc}")
    rows = real_rows(600)
    amounts = [c for c in RAW_COLUMNS if c.startswith(("bill_amt", "pay_amt")) or c == "limit_bal"]
    shifted = [{**r, **{c: r[c] * 3 for c in amounts}} for r in rows[300:]]

    stream = PredictionLog(REDIS, PREFIX).key("credit-risk")
    r = redis.Redis.from_url(REDIS)

    def check(batch):
        before = r.xlen(stream)
        assert post(served, "/predict/credit-risk/batch", {"applicants": batch}).status_code == 200
        for _ in range(40):  # the log is written off the request path: wait for the batch
            if r.xlen(stream) >= before + len(batch):
                break
            time.sleep(0.25)
        latest = admin(served, "GET", "/drift/credit-risk")
        previous = latest.json()["checked_at"] if latest.status_code == 200 else None
        out = admin(served, "POST", "/drift/credit-risk/check", params={"window": len(batch)})
        if out.status_code == 200:
            assert out.json()["checked"], out.text
            return out.json()
        assert out.status_code == 202 and out.json()["status"] == "running", out.text
        for _ in range(240):  # still running after the route's wait: poll the latest result
            latest = admin(served, "GET", "/drift/credit-risk")
            if latest.status_code == 200 and latest.json()["checked_at"] != previous:
                return latest.json()
            time.sleep(0.5)
        raise AssertionError("the drift check did not finish")

    normal, drifted = check(rows[:300]), check(shifted)
    assert drifted["level"] == "critical" and drifted["share_drifted"] > normal["share_drifted"]
    assert all(drifted["features"][c]["drifted"] for c in ("bill_amt1", "limit_bal"))
    assert drifted["model_version"] == served["version"]
    assert drifted["prediction_column"] == "prediction.default_probability"  # prediction drift
    assert drifted["prediction"]["score"] >= 0
    alerts = admin(served, "GET", "/drift/alerts").json()["alerts"]
    assert alerts["credit-risk"]["level"] == "critical"
    latest = admin(served, "GET", "/drift/credit-risk").json()
    assert latest["level"] == "critical" and latest["checked_at"] == drifted["checked_at"]
    assert admin(served, "DELETE", "/drift/alerts").json()["cleared"] >= 1
    assert admin(served, "GET", "/drift/alerts").json()["alerts"] == {}


# --- hostile input: every answer 4xx, the server alive -----------------------------------------

HOSTILE = [
    ("/predict/credit-risk", b"[" * 50_000 + b"]" * 50_000),  # deeply nested JSON
    ("/predict/credit-risk", b'{"applicant": {"limit_bal": "\xff\xfe"}}'),  # not UTF-8
    ("/predict/credit-risk", b'{"applicant": {"limit_bal": ' + b"9" * 5000 + b"}}"),  # huge int
    ("/predict/credit-risk", b'{"applicant": {"limit_bal": Infinity}}'),
    ("/predict/intent", json.dumps({"query": "x" * 100_000}).encode()),
    ("/predict/intent", json.dumps({"query": "\u0000\u202e\u200b\u0007"}).encode()),
    ("/predict/intent", b'{"query": "ok", "query": 5}'),  # duplicate key
    ("/predict/ner", json.dumps({"text": "\ud800"}).encode()),  # lone surrogate (escaped)
    ("/predict/category", b"{" + b'"a":1,' * 100_000 + b'"b":1}'),  # 600 KB of unknown fields
]


@pytest.mark.parametrize(("path", "raw"), HOSTILE)
def test_hostile_bodies_get_a_4xx_and_the_server_stays_up(served, path, raw):
    r = httpx.post(served["url"] + path, content=raw,
                   headers={"Content-Type": "application/json"}, timeout=30)  # fmt: skip
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert httpx.get(served["url"] + "/readyz", timeout=5).status_code == 200


def test_a_body_over_the_limit_is_413_before_any_parsing(served):
    big = json.dumps({"applicants": real_rows(1)}).encode() + b" " * (1 << 20)
    labels = {"model_name": "credit-risk", "error_type": "invalid_input"}
    before = metric(served, "ml_errors_total", **labels)
    r = httpx.post(served["url"] + "/predict/credit-risk/batch", content=big,
                   headers={"Content-Type": "application/json"}, timeout=30)  # fmt: skip
    assert r.status_code == 413 and r.json()["detail"][0]["type"] == "request_too_large"
    assert metric(served, "ml_errors_total", **labels) - before == 1  # counted as the caller's


def metric(served, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` on the Bento's /metrics whose labels include ``labels``."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(served["url"] + "/metrics").text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and labels.items() <= s.labels.items())  # fmt: skip


def cache_count(served, result: str) -> float:
    return metric(served, "ml_prediction_cache_requests_total", model_name="credit-risk",
                  result=result)  # fmt: skip


def test_repeated_applicants_are_answered_from_the_prediction_cache(served):
    rows = [{**r, "limit_bal": r["limit_bal"] + 0.5} for r in real_rows(50)]  # unseen inputs
    hits = cache_count(served, "hit")
    first = post(served, "/predict/credit-risk/batch", {"applicants": rows}).json()
    again = post(served, "/predict/credit-risk/batch", {"applicants": rows}).json()
    assert first["predictions"] == again["predictions"]
    assert cache_count(served, "hit") - hits == 50


def test_cache_clear_is_an_admin_route(served):
    post(served, "/predict/credit-risk", {"applicant": real_rows(1)[0]})  # cached now
    assert httpx.post(served["url"] + "/cache/clear").status_code == 401
    r = httpx.post(served["url"] + "/cache/clear?model=credit-risk",
                   headers={"Authorization": f"Bearer {ADMIN}"})  # fmt: skip
    assert r.status_code == 200 and r.json()["deleted"] >= 1
    misses = cache_count(served, "miss")
    post(served, "/predict/credit-risk", {"applicant": real_rows(1)[0]})
    assert cache_count(served, "miss") - misses == 1


def test_schemathesis_finds_no_server_error_on_any_route(served):
    """Property-based fuzzing of every operation in the Bento's OpenAPI schema (short run)."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st, "schemathesis is a dev dependency"
    out = subprocess.run(
        [st, "run", served["url"] + "/docs.json", "--checks", "not_a_server_error",
         "--max-examples", "8", "--seed", "7", "--request-timeout", "30", "--no-color"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    summary = out.stdout[-3000:]
    assert out.returncode == 0, summary
    assert "Schema Error" not in out.stdout and " passed" in summary
    assert served["proc"].poll() is None
