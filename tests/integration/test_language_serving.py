"""The language Bento over real HTTP: intent, ner and categorizer behind `bentoml serve`."""

import json

import httpx
import pytest

from finbento import bentos
from finbento.serving import free_port, start_bento_server, stop_bento_server

pytestmark = pytest.mark.integration
LANGUAGE = ("intent", "ner", "categorizer")


@pytest.fixture(scope="module")
def served(trained, tmp_path_factory):
    tag = bentos.build("language", trained.tags, trained.versions)
    port = free_port()
    log = tmp_path_factory.mktemp("logs") / "serve-language.log"
    proc = start_bento_server(tag, port, log_file=log)
    yield {"url": f"http://127.0.0.1:{port}", "tag": tag, "trained": trained}
    stop_bento_server(proc)


def post(served, path, body):
    return httpx.post(served["url"] + path, content=json.dumps(body),
                      headers={"Content-Type": "application/json"}, timeout=30)  # fmt: skip


def test_bento_packages_the_three_language_models_and_no_others(served):
    import bentoml

    bento = bentoml.get(served["tag"])
    packaged = sorted(m.tag.name for svc in bento.info.services for m in svc.models)
    assert packaged == sorted(LANGUAGE)
    for name in LANGUAGE:
        assert bento.info.labels[name] == served["trained"].versions[name]


def test_intent_single_and_batch_in_input_order(served):
    queries = ["I still have not received my card", "How do I top up with a bank transfer?",
               "my card payment was declined"]  # fmt: skip
    single = [post(served, "/predict/intent", {"query": q}) for q in queries]
    assert all(r.status_code == 200 for r in single), single[0].text
    batch = post(served, "/predict/intent/batch", {"queries": queries})
    assert batch.status_code == 200, batch.text
    predictions = batch.json()["predictions"]
    assert [p["intent"] for p in predictions] == [r.json()["intent"] for r in single]
    first = predictions[0]
    assert len(first["alternatives"]) == 3 and first["alternatives"][0]["intent"] == first["intent"]
    assert first["model"] == "intent"
    assert first["model_version"] == served["trained"].versions["intent"]
    assert sorted(a["confidence"] for a in first["alternatives"])[::-1] == [
        a["confidence"] for a in first["alternatives"]
    ]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/predict/intent", {"query": ""}, "query"),
        ("/predict/intent", {"query": "x" * 10_000}, "query"),
        ("/predict/intent", {}, "query"),
        ("/predict/intent/batch", {"queries": []}, "queries"),
        ("/predict/ner", {"text": "   "}, "text"),
        ("/predict/ner", {"text": "x" * 10_000}, "text"),
        ("/predict/ner", {"text": "pay 500", "reference_date": "2024-13-40"}, "reference_date"),
        ("/predict/category", {"description": "", "amount": 10}, "description"),
        ("/predict/category", {"description": "uber ride", "amount": "lots"}, "amount"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(served, path, body, field):
    r = post(served, path, body)
    assert 400 <= r.status_code < 500, r.text
    assert field in r.text


def test_ner_finds_money_and_normalises_it(served):
    text = "Send Rs. 2,500 to my savings account tomorrow"
    r = post(served, "/predict/ner", {"text": text, "reference_date": "2024-03-10"})
    assert r.status_code == 200, r.text
    body = r.json()
    money = [e for e in body["entities"] if e["label"] == "MONEY"]
    assert money and money[0]["value"] == {"value": 2500.0, "currency": "INR"}
    for e in body["entities"]:
        assert text[e["start"] : e["end"]] == e["text"]
    assert body["model"] == "ner" and body["model_version"] == served["trained"].versions["ner"]
    batch = post(served, "/predict/ner/batch", {"texts": ["pay ₹300", "hello"]})
    assert batch.status_code == 200 and len(batch.json()["predictions"]) == 2


def test_categorizer_single_and_batch(served):
    items = [{"description": "Uber ride to the airport", "amount": -450.0},
             {"description": "Monthly salary credit", "amount": 85000.0}]  # fmt: skip
    single = [post(served, "/predict/category", item) for item in items]
    assert all(r.status_code == 200 for r in single), single[0].text
    batch = post(served, "/predict/category/batch", {"transactions": items})
    assert batch.status_code == 200, batch.text
    got = [p["category"] for p in batch.json()["predictions"]]
    assert got == [r.json()["category"] for r in single]
    assert 0 <= single[0].json()["confidence"] <= 1
    assert single[0].json()["model_version"] == served["trained"].versions["categorizer"]
