"""The recommend Bento over real HTTP: recommendations, eligibility, 422 for unknown products."""

import json
import uuid

import httpx
import pytest

from finbento import bentos
from finbento.recommender import PRODUCT_CODES

pytestmark = pytest.mark.integration
PREFIX = f"finbento-test-{uuid.uuid4().hex[:8]}"
CURRENT, DIRECT_DEBIT = "ind_cco_fin_ult1", "ind_recibo_ult1"


@pytest.fixture(scope="module")
def served(trained, tmp_path_factory):
    from finbento.serving import free_port, start_bento_server, stop_bento_server

    tag = bentos.build("recommend", trained.tags, trained.versions)
    port = free_port()
    log = tmp_path_factory.mktemp("logs") / "serve-recommend.log"
    proc = start_bento_server(tag, port, {"FINBENTO_REDIS_PREFIX": PREFIX}, log_file=log)
    yield {"url": f"http://127.0.0.1:{port}", "tag": tag, "trained": trained}
    stop_bento_server(proc)


def post(served, body):
    return httpx.post(served["url"] + "/recommend", content=json.dumps(body),
                      headers={"Content-Type": "application/json"}, timeout=30)  # fmt: skip


def test_bento_is_versioned_by_the_recommender():
    tag = bentos.BUNDLES["recommend"]
    assert tag.bento_name == "finbento-recommend" and tag.models == ("recommender",)


def test_recommendations_skip_held_products_and_carry_reasons(served):
    assert served["tag"].startswith("finbento-recommend:re")
    profile = {"age": 42, "job": "technician", "marital": "married"}
    r = post(served, {"customer_id": "c-1", "products_held": [CURRENT, DIRECT_DEBIT], "k": 5,
                      "profile": profile})  # fmt: skip
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["model"] == "recommender" and answer["customer_id"] == "c-1"
    assert answer["model_version"] == served["trained"].versions["recommender"]
    recs = answer["recommendations"]
    assert len(recs) == 5 and not {x["product"] for x in recs} & {CURRENT, DIRECT_DEBIT}
    assert {x["product"] for x in recs} <= set(PRODUCT_CODES)
    assert all(x["name"] and x["reason"] and 0 <= x["score"] <= 1 for x in recs)
    assert [x["score"] for x in recs] == sorted((x["score"] for x in recs), reverse=True)


def test_empty_holding_gets_popular_eligible_products(served):
    r = post(served, {"products_held": [], "k": 3})
    assert r.status_code == 200, r.text
    recs = r.json()["recommendations"]
    assert recs[0]["product"] == CURRENT and recs[0]["reason"] == "popular with customers"
    child = post(served, {"products_held": [], "profile": {"age": 10}, "k": 10}).json()
    offered = {x["product"] for x in child["recommendations"]}
    assert "ind_tjcr_fin_ult1" not in offered and "ind_ctju_fin_ult1" in offered
    adult = post(served, {"products_held": [], "profile": {"age": 30}, "k": 10}).json()
    assert "ind_ctju_fin_ult1" not in {x["product"] for x in adult["recommendations"]}


def test_unknown_product_codes_are_a_422_naming_them(served):
    r = post(served, {"products_held": [CURRENT, "ind_nope_ult1", "ind_zzz_ult1"], "k": 3})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["unknown_products"] == ["ind_nope_ult1", "ind_zzz_ult1"]
    assert "ind_nope_ult1" in body["error"]


@pytest.mark.parametrize(
    ("body", "field"),
    [({"products_held": [], "k": 0}, "k"), ({"products_held": [], "k": 11}, "k"),
     ({"products_held": ["Not a code!"]}, "products_held"),
     ({"products_held": [CURRENT] * 25}, "products_held"),
     ({"products_held": [], "profile": {"job": "astronaut"}}, "job"),
     ({"products_held": [], "profile": {"age": 300}}, "age"),
     ({"products_held": [], "profile": {"income": 5}}, "income"),
     ({"k": 3}, "products_held")],
)  # fmt: skip
def test_bad_input_is_a_4xx_naming_the_field(served, body, field):
    r = post(served, body)
    assert 400 <= r.status_code < 500, r.text
    assert field in r.text


def test_metrics_count_predictions_and_invalid_input(served):
    post(served, {"products_held": ["ind_nope_ult1"], "k": 3})
    assert post(served, {"products_held": [CURRENT], "k": 2}).status_code == 200
    lines = httpx.get(served["url"] + "/metrics", timeout=10).text.splitlines()

    def has(*parts: str) -> bool:
        return any(all(p in line for p in parts) for line in lines)

    assert has("ml_predictions_total{", 'model_name="recommender"', 'status="ok"')
    assert has("ml_errors_total{", 'model_name="recommender"', 'error_type="invalid_input"')
    assert has("ml_model_info{", 'model_name="recommender"')
