"""The risk Bento's /metrics under two API workers: finbento's metrics summed over processes."""

import concurrent.futures as cf
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from finbento import bentos
from finbento.serving import free_port, start_bento_server, stop_bento_server
from tests.conftest import applicant_dict

pytestmark = pytest.mark.integration
GOOD, BAD = 80, 3


@pytest.fixture(scope="module")
def served(trained, tmp_path_factory):
    tag = bentos.build("risk", trained.tags, trained.versions)
    port = free_port()
    env = {
        "BENTOML_CONFIG_OPTIONS": 'services."finbento-risk".workers=2',
        "FINBENTO_REDIS_PREFIX": f"finbento-test-{uuid.uuid4().hex[:8]}",
        "FINBENTO_PREDICTION_LOG_ENABLED": "false",
    }
    log = tmp_path_factory.mktemp("logs") / "serve.log"
    proc = start_bento_server(tag, port, env, log_file=log)
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=16)) as client:

        def call(i: int) -> int:
            body = (
                {"applicant": applicant_dict(age=12)}
                if i < BAD
                else {"applicant": applicant_dict()}
            )
            return client.post(url + "/predict/credit-risk", json=body).status_code

        with cf.ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(call, range(GOOD + BAD)))
    yield {"url": url, "codes": codes, "trained": trained, "log": log, "proc": proc}
    stop_bento_server(proc)


def samples(url: str) -> list:
    text = httpx.get(url + "/metrics", timeout=10).text
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def total(rows, name: str, **labels) -> float:
    return sum(s.value for s in rows if s.name == name
               and all(s.labels.get(k) == v for k, v in labels.items()))  # fmt: skip


def test_two_api_workers_are_running(served):
    import psutil

    assert served["codes"].count(200) == GOOD and served["codes"].count(400) == BAD
    children = psutil.Process(served["proc"].pid).children(recursive=True)
    api_workers = [c for c in children if "--service-name finbento-risk " in " ".join(c.cmdline())]
    assert len(api_workers) == 2  # BENTOML_CONFIG_OPTIONS took effect


def test_predictions_and_errors_are_counted_once_over_all_workers(served):
    rows = samples(served["url"])
    version = served["trained"].versions["credit-risk"]
    assert total(rows, "ml_predictions_total", model_name="credit-risk") == GOOD
    assert total(rows, "ml_predictions_total", model_name="credit-risk", model_version=version,
                 status="ok") == GOOD  # fmt: skip
    assert (
        total(rows, "ml_errors_total", model_name="credit-risk", error_type="invalid_input") == BAD
    )
    assert total(rows, "ml_prediction_latency_seconds_count", model_name="credit-risk") == GOOD
    assert (
        total(rows, "bentoml_service_request_total", endpoint="/predict/credit-risk") >= GOOD + BAD
    )


def test_model_info_names_every_packaged_version_and_its_mlflow_run(served):
    rows = samples(served["url"])
    info = {s.labels["model_name"]: s for s in rows if s.name == "ml_model_info"}
    assert set(info) == {"credit-risk", "fraud", "anomaly"}
    for model, sample in info.items():
        assert sample.value == 1
        assert sample.labels["model_version"] == served["trained"].versions[model]
        assert len(sample.labels["mlflow_run_id"]) == 32  # MLflow run ids: 32 hex digits
    assert total(rows, "ml_active_models") == 3  # max over workers, not their sum
