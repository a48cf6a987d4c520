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
