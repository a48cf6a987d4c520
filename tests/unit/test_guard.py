"""Request-size limit and API keys of the public routes (services/guard.py)."""

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from services.guard import RequestGuard


async def echo(request):
    body = await request.body()
    return JSONResponse({"bytes": len(body), "head": body[:8].decode("latin-1")})


def client(
    max_bytes: int = 1000, api_keys: list[str] | None = None, max_item_bytes: int | None = None
) -> TestClient:
    paths = ("/predict/intent", "/predict/intent/batch", "/readyz", "/metrics")
    app = Starlette(routes=[Route(p, echo, methods=["GET", "POST"]) for p in paths])
    item = max_bytes if max_item_bytes is None else max_item_bytes
    app.add_middleware(RequestGuard, max_bytes=max_bytes, api_keys=api_keys or [],
                       max_item_bytes=item)  # fmt: skip
    return TestClient(app)


def test_a_body_at_the_limit_passes_intact_and_one_byte_more_is_413():
    c = client(max_bytes=1000)
    ok = c.post("/predict/intent", content=b"x" * 1000)
    assert ok.status_code == 200 and ok.json()["bytes"] == 1000
    r = c.post("/predict/intent", content=b"x" * 1001)
    assert r.status_code == 413
    assert r.json()["detail"][0] == {"loc": ["body"], "type": "request_too_large",
                                     "msg": "request body larger than 1000 bytes"}  # fmt: skip


def test_one_item_routes_have_their_own_tighter_limit_also_for_chunked_bodies():
    c = client(max_bytes=1000, max_item_bytes=300)
    assert c.post("/predict/intent", content=b"x" * 300).json()["bytes"] == 300
    r = c.post("/predict/intent", content=b"x" * 301)
    assert r.status_code == 413 and r.json()["detail"][0]["msg"] == (
        "request body larger than 300 bytes"
    )
    assert c.post("/predict/intent", content=iter([b"x" * 200] * 2)).status_code == 413
    assert c.post("/predict/intent/batch", content=b"x" * 1000).json()["bytes"] == 1000
    assert c.post("/predict/intent/batch", content=b"x" * 1001).status_code == 413
    wide = client(max_bytes=1000, max_item_bytes=5000)  # never above the general limit
    assert wide.post("/predict/intent", content=b"x" * 1001).status_code == 413


def test_a_chunked_body_is_counted_while_read_and_replayed_when_small():
    c = client(max_bytes=1000)

    def chunks(n: int):
        for _ in range(n):
            yield b"abcdefghij" * 10  # 100 bytes a chunk, no Content-Length

    assert c.post("/predict/intent", content=chunks(11)).status_code == 413
    r = c.post("/predict/intent", content=chunks(9))
    assert r.status_code == 200 and r.json() == {"bytes": 900, "head": "abcdefgh"}


def test_a_malformed_content_length_is_refused():
    r = client().post("/predict/intent", content=b"{}", headers={"content-length": "-1"})
    assert r.status_code in (400, 413)


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"x-api-key": "wrong"}, 401), ({"authorization": "Bearer wrong"}, 401),
     ({"x-api-key": ""}, 401), ({"x-api-key": "k2"}, 200), ({"authorization": "Bearer k1"}, 200),
     ({"authorization": "bearer k1"}, 200), ({"authorization": "Basic k1"}, 401)],
)  # fmt: skip
def test_model_routes_need_one_of_the_keys_when_keys_are_set(headers, status):
    r = client(api_keys=["k1", "k2"]).post("/predict/intent", content=b"{}", headers=headers)
    assert r.status_code == status
    if status == 401:
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json()["detail"][0]["loc"] == ["header", "x-api-key"]


def test_health_and_metrics_stay_open_and_no_keys_means_no_check():
    keyed = client(api_keys=["k1"])
    assert keyed.get("/readyz").status_code == 200 and keyed.get("/metrics").status_code == 200
    assert client().post("/predict/intent", content=b"{}").status_code == 200


@pytest.mark.parametrize(
    ("ctype", "status"),
    [("application/json", 200), ("application/json; charset=utf-8", 200), (None, 200),
     ("multipart/form-data", 415), ("text/plain", 415), ("application/x-www-form-urlencoded", 415)],
)  # fmt: skip
def test_model_routes_take_json_bodies_only(ctype, status):
    headers = {"content-type": ctype} if ctype else {}
    r = client().post("/predict/intent", content=b"{}", headers=headers)
    assert r.status_code == status
    if status == 415:
        assert r.json()["detail"][0]["loc"] == ["header", "content-type"]


async def bentoml_422(request):
    """What BentoML 1.4 answers for a BentoMLException of status 422 (a one-item list)."""
    return JSONResponse([{"error": request.query_params["error"]}], status_code=422)


def test_bentoml_batch_size_422_gets_the_project_error_shape_and_other_422s_stay():
    app = Starlette(routes=[Route(p, bentoml_422, methods=["POST"])
                            for p in ("/predict/credit-risk/batch", "/monitoring/x")])  # fmt: skip
    app.add_middleware(RequestGuard, max_bytes=1000, api_keys=[])
    c = TestClient(app)
    msg = "applicants: at most 1000 items, got 1001"
    r = c.post("/predict/credit-risk/batch", params={"error": msg}, content=b"{}")
    assert r.status_code == 422 and int(r.headers["content-length"]) == len(r.content)
    assert r.json() == {
        "error": msg,
        "detail": [
            {"loc": ["applicants"], "msg": "at most 1000 items, got 1001", "type": "too_long"}
        ],
    }
    other = c.post("/predict/credit-risk/batch", params={"error": "no"}, content=b"{}")
    assert other.status_code == 422 and other.json() == [{"error": "no"}]
    unguarded = c.post("/monitoring/x", params={"error": msg}, content=b"{}")
    assert unguarded.json() == [{"error": msg}]  # not a model route: left as it is


def many_errors(n: int):
    from pydantic import BaseModel, ConfigDict, ValidationError

    class Row(BaseModel):
        model_config = ConfigDict(extra="forbid")
        a: int

    try:
        Row.model_validate({f"k{i}": i for i in range(n)} | {"a": "x"})
    except ValidationError as exc:
        return exc
    raise AssertionError("valid")


def test_trimmed_keeps_the_first_errors_and_counts_the_rest():
    from services.guard import MAX_REPORTED_ERRORS, trimmed

    exc = many_errors(5000)
    assert exc.error_count() == 5001
    short = trimmed(exc).errors(include_url=False, include_input=False)
    assert len(short) == MAX_REPORTED_ERRORS + 1
    assert short[:2] == [{"type": "int_parsing", "loc": ("a",), "msg": exc.errors()[0]["msg"]},
                         {"type": "extra_forbidden", "loc": ("k0",),
                          "msg": "Extra inputs are not permitted"}]  # fmt: skip
    assert short[-1] == {"type": "too_many_errors", "loc": (),
                         "msg": f"{5001 - MAX_REPORTED_ERRORS} more errors not listed"}  # fmt: skip
    few = many_errors(3)
    assert trimmed(few) is few


def test_cap_validation_errors_wraps_each_api_once():
    import asyncio
    from types import SimpleNamespace

    from pydantic import ValidationError

    from services.guard import MAX_REPORTED_ERRORS, cap_validation_errors

    class Spec:
        @classmethod
        async def from_http_request(cls, request, serde):
            if request == "bad":
                raise many_errors(1000)
            return "parsed"

    service = SimpleNamespace(apis={"x": SimpleNamespace(input_spec=Spec)})
    assert cap_validation_errors(service) == 1 and cap_validation_errors(service) == 0
    assert asyncio.run(Spec.from_http_request("ok", None)) == "parsed"
    with pytest.raises(ValidationError) as exc:
        asyncio.run(Spec.from_http_request("bad", None))
    assert exc.value.error_count() == MAX_REPORTED_ERRORS + 1
