"""Per-model error counts and model info of a public Bento (services/http_metrics.py)."""

import pytest
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from services import http_metrics


def errors(model: str, kind: str) -> float:
    value = REGISTRY.get_sample_value("ml_errors_total", {"model_name": model, "error_type": kind})
    return value or 0.0


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("/predict/credit-risk", "credit-risk"),
        ("/predict/credit-risk/batch", "credit-risk"),
        ("/predict/fraud/batch", "fraud"),
        ("/transactions", "fraud"),
        ("/predict/category", "categorizer"),
        ("/advice", "advisor"),
        ("/recommend", "recommender"),
        ("/recommendations", None),
        ("/predict/credit-riskier", None),
        ("/metrics", None),
        ("/readyz", None),
    ],
)
def test_route_model_maps_prefixes_only_on_segment_boundaries(path, model):
    assert http_metrics.route_model(path) == model


@pytest.mark.parametrize(
    ("status", "kind"),
    [(200, None), (307, None), (400, "invalid_input"), (413, "invalid_input"),
     (422, "invalid_input"), (404, "not_found"), (401, "client"), (429, "client"),
     (500, "internal"), (502, "internal"), (503, "unavailable"), (504, "timeout")],
)  # fmt: skip
def test_error_type_of_each_status(status, kind):
    assert http_metrics.error_type(status) == kind


def app_with(status_of_path: dict[str, int]) -> TestClient:
    async def answer(request):
        if request.url.path == "/predict/ner/boom":
            raise RuntimeError("model crashed")
        return JSONResponse({}, status_code=status_of_path[request.url.path])

    routes = [Route(p, answer, methods=["POST"]) for p in [*status_of_path, "/predict/ner/boom"]]
    app = Starlette(routes=routes)
    app.add_middleware(http_metrics.ModelMetricsMiddleware, models=("intent", "ner"))
    return TestClient(app, raise_server_exceptions=False)


def test_middleware_counts_error_answers_per_model_and_type():
    client = app_with({"/predict/intent": 200, "/predict/intent/batch": 400,
                       "/predict/ner": 503, "/livez": 500})  # fmt: skip
    before = {k: errors(*k) for k in [("intent", "invalid_input"), ("ner", "unavailable"),
                                      ("ner", "internal"), ("intent", "internal")]}  # fmt: skip
    for path in ["/predict/intent", "/predict/intent/batch", "/predict/intent/batch",
                 "/predict/ner", "/livez", "/predict/ner/boom"]:  # fmt: skip
        client.post(path)
    assert errors("intent", "invalid_input") - before["intent", "invalid_input"] == 2
    assert errors("ner", "unavailable") - before["ner", "unavailable"] == 1
    assert errors("ner", "internal") - before["ner", "internal"] == 1  # the exception, as a 500
    assert errors("intent", "internal") == before["intent", "internal"]  # /livez: no model


def test_model_info_of_a_store_without_the_models_publishes_nothing_and_does_not_raise(
    monkeypatch,
):
    from services.args import ARGS

    monkeypatch.setattr(ARGS, "intent_model", "intent:not-in-the-store")
    monkeypatch.setattr(ARGS, "ner_model", "ner:not-in-the-store")
    assert http_metrics.publish_model_info(("intent", "ner")) == 0
    assert REGISTRY.get_sample_value("ml_active_models") == 0
