import asyncio

import pytest

from services import bentoml_fixes


def test_replaced_session_stays_open_for_requests_in_flight():
    from _bentoml_impl.client.proxy2 import SessionManager

    bentoml_fixes.apply()  # idempotent; services/__init__ applied it already

    async def scenario():
        manager = SessionManager("http://127.0.0.1:9", timeout=0.2, headers={}, max_requests=1)
        first = await manager.get_session()
        await manager.get_session()  # request 2
        second = await manager.get_session()  # request 3: over max_requests, refreshed
        assert second is not first
        assert not first.closed, "a request still using the old session would fail"
        await asyncio.sleep(1.4)  # timeout + 1 s grace
        assert first.closed
        await manager.close()

    asyncio.run(scenario())


def test_apply_is_idempotent():
    pytest.importorskip("_bentoml_impl.client.proxy2")
    assert bentoml_fixes.apply() is False


def test_output_media_type_is_computed_once_per_io_model(monkeypatch):
    from _bentoml_sdk.io_models import IORootModel, ensure_io_descriptor

    bentoml_fixes.apply()
    text_output = ensure_io_descriptor(str)
    assert issubclass(text_output, IORootModel)
    calls = []
    schema = text_output.model_json_schema
    monkeypatch.setattr(text_output, "model_json_schema",
                        classmethod(lambda cls: calls.append(1) or schema()))  # fmt: skip
    first = [text_output.mime_type() for _ in range(5)]
    assert first == ["text/plain"] * 5  # a str output is text, as BentoML decides
    assert len(calls) <= 1  # the schema was built at most once (zero: cached before the patch)


def test_a_service_method_is_bound_once_per_instance():
    import bentoml

    bentoml_fixes.apply()

    @bentoml.service(name="bound-once")
    class Echo:
        @bentoml.api
        def echo(self, x: int) -> int:
            return x + 1

    instance = Echo.inner()
    assert instance.echo is instance.echo
    assert instance.echo.local(2) == 3  # still the method, bound to this instance
    other = Echo.inner()
    assert other.echo is not instance.echo


def test_the_learnt_batching_wait_is_capped():
    from bentoml._internal.marshal.dispatcher import Optimizer

    bentoml_fixes.apply()
    optimizer = Optimizer(max_latency=2.0)
    for _ in range(10):  # batches that queued 300 ms behind a busy model
        optimizer.o_stat.append((16, 0.03, 0.3))
    optimizer.trigger_refresh()
    assert optimizer.wait == bentoml_fixes.MAX_BATCH_WAIT_S  # not 0.3: a lone request goes at once
    assert 0.001 < optimizer.o_a < 0.01  # the latency model itself is still learnt
