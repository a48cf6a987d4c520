"""Calls merged before the hop (services/coalesce.py) and batches in flight (bentoml_fixes)."""

import asyncio

import pytest

from services.coalesce import Coalescer


class Model:
    """A batched call that records each batch and takes ``delay_s`` to answer."""

    def __init__(self, delay_s: float = 0.01, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.delay_s, self.fail_on = delay_s, fail_on

    async def __call__(self, items: list[str]) -> list[str]:
        self.batches.append(list(items))
        await asyncio.sleep(self.delay_s)
        if self.fail_on in items:
            raise ConnectionError(f"model down at {self.fail_on}")
        return [f"scored {x}" for x in items]


def test_a_lone_call_goes_at_once_and_alone():
    model = Model()

    async def run():
        c = Coalescer(model, max_items=8)
        return await c(["a", "b"]), c

    out, c = asyncio.run(run())
    assert out == ["scored a", "scored b"] and model.batches == [["a", "b"]]
    assert (c.calls, c.items) == (1, 2)


def test_calls_arriving_while_one_is_in_flight_leave_together_each_with_its_own_rows():
    model = Model(delay_s=0.05)

    async def run():
        c = Coalescer(model, max_items=64)
        first = asyncio.create_task(c(["q0"]))
        await asyncio.sleep(0.01)  # q0 is in flight now
        rest = [asyncio.create_task(c([f"q{i}", f"r{i}"])) for i in range(1, 6)]
        return await first, await asyncio.gather(*rest)

    first, rest = asyncio.run(run())
    assert first == ["scored q0"]
    assert rest == [[f"scored q{i}", f"scored r{i}"] for i in range(1, 6)]
    assert model.batches == [["q0"], [x for i in range(1, 6) for x in (f"q{i}", f"r{i}")]]


def test_merged_calls_respect_max_items_but_a_larger_request_still_goes_alone():
    model = Model(delay_s=0.02)

    async def run():
        c = Coalescer(model, max_items=4)
        first = asyncio.create_task(c(["x"]))
        await asyncio.sleep(0.005)
        parts = [["a", "b"], ["c", "d"], ["e"], list("fghijk")]
        tasks = [asyncio.create_task(c(p)) for p in parts]
        await first
        return await asyncio.gather(*tasks)

    out = asyncio.run(run())
    assert out[3] == [f"scored {x}" for x in "fghijk"]
    assert model.batches == [["x"], ["a", "b", "c", "d"], ["e"], list("fghijk")]


def test_an_error_reaches_every_caller_of_that_call_and_later_calls_still_work():
    model = Model(delay_s=0.02, fail_on="bad")

    async def run():
        c = Coalescer(model, max_items=64)
        first = asyncio.create_task(c(["ok0"]))
        await asyncio.sleep(0.005)
        merged = [asyncio.create_task(c([x])) for x in ("ok1", "bad", "ok2")]
        results = await asyncio.gather(first, *merged, return_exceptions=True)
        return results, await c(["later"])

    results, later = asyncio.run(run())
    assert results[0] == ["scored ok0"]
    assert all(isinstance(r, ConnectionError) for r in results[1:])
    assert later == ["scored later"]


def test_a_call_answering_the_wrong_number_of_rows_is_an_error_not_a_shift():
    async def short(items):
        return items[:-1]

    async def run():
        return await Coalescer(short)(["a", "b"])

    with pytest.raises(ValueError, match="2 items sent, 1 results returned"):
        asyncio.run(run())


def test_batched_model_services_run_two_batches_at_once(monkeypatch):
    from bentoml._internal.marshal.dispatcher import CorkDispatcher

    from finbento.settings import get_settings
    from services import bentoml_fixes

    bentoml_fixes.apply()
    sizes = []
    for value in (None, "3"):
        if value is None:
            monkeypatch.delenv("FINBENTO_BATCHES_IN_FLIGHT", raising=False)
        else:
            monkeypatch.setenv("FINBENTO_BATCHES_IN_FLIGHT", value)
        get_settings.cache_clear()
        try:
            sizes.append(CorkDispatcher(100, 8, fallback=lambda: None)._sema.sema)
        finally:
            get_settings.cache_clear()
    assert sizes == [2, 3]  # BentoML's own: 1
