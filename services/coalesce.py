"""Batching before the hop: an API worker's concurrent calls to a model service leave as one.

BentoML's adaptive batching gathers requests inside the model service, after each one has made
its own HTTP call from the public worker: the call (aiohttp client, the model service's HTTP
server and IO descriptors) cost about as much CPU as scoring a MiniLM query (bench/serving.py,
py-spy). :class:`Coalescer` sends a call at once when none of its own is in flight, and while
``max_in_flight`` are, it gathers the items of every call that arrives; when one returns, the
gathered items leave together (at most ``max_items`` per call), and each caller gets its own rows
back. So a lone request waits for nothing, and under load one hop carries many requests; the
model service's adaptive batching still merges the calls of all API workers.

One :class:`Coalescer` per worker process and event loop (the futures belong to the loop): the
routes keep one per model service (:func:`batched_call` in a ``functools.cached_property``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from monitoring.metrics import MODEL_CALL_ITEMS
from services import dependency


class Coalescer:
    """Merge concurrent calls ``call(items)`` into fewer, larger ones.

    Args:
        call: the batched call, e.g. ``lambda items: dependency.call(...)``; it takes a list of
            n items and returns a sequence of n results (rows of an array, lists, ...) in order.
        max_items: most items sent in one call (a single larger request still goes alone).
        max_in_flight: calls of this coalescer running at once; items wait while all are busy.

    Raises:
        whatever ``call`` raises, to every caller whose items were in that call.
    """

    def __init__(
        self,
        call: Callable[[list[Any]], Awaitable[Sequence[Any]]],
        max_items: int = 64,
        max_in_flight: int = 1,
    ) -> None:
        self.call, self.max_items, self.max_in_flight = call, max_items, max_in_flight
        self._waiting: list[tuple[list[Any], asyncio.Future[list[Any]]]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()  # the loop keeps only weak references
        #: calls made and items sent, for tests and metrics (items / calls = mean merge)
        self.calls = self.items = 0

    async def __call__(self, items: list[Any]) -> list[Any]:
        """The results for ``items`` (same length and order), from a call shared with others."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._waiting.append((list(items), future))
        self._send()
        return await future

    def _send(self) -> None:
        while self._waiting and self._in_flight < self.max_in_flight:
            batch, size = [], 0
            while self._waiting and (
                not batch or size + len(self._waiting[0][0]) <= self.max_items
            ):
                entry = self._waiting.pop(0)
                batch.append(entry)
                size += len(entry[0])
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[list[Any], asyncio.Future[list[Any]]]]) -> None:
        items = [item for part, _ in batch for item in part]
        self.calls, self.items = self.calls + 1, self.items + len(items)
        try:
            results = await self.call(items)
            if len(results) != len(items):
                raise ValueError(f"{len(items)} items sent, {len(results)} results returned")
        except BaseException as exc:  # every caller of this call gets the error
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            start = 0
            for part, future in batch:
                if not future.done():
                    future.set_result(list(results[start : start + len(part)]))
                start += len(part)
        finally:
            self._in_flight -= 1
            self._send()


def batched_call(
    model: str, method: Callable[[list[Any]], Awaitable[Sequence[Any]]], max_items: int,
    merge: bool = True,
) -> Callable[[list[Any]], Awaitable[Sequence[Any]]]:  # fmt: skip
    """A model service's batchable method as the public routes call it.

    Args:
        model: the model's name (for :func:`services.dependency.call`'s retry metric).
        method: e.g. ``self.intent.to_async.probabilities``: n items -> n results.
        max_items: the service's ``max_batch_size``.
        merge: False: every call goes alone (batching switched off, for comparison).

    Returns:
        ``items -> results``: :func:`services.dependency.call` (retries on connection errors and
        503), behind a :class:`Coalescer` when ``merge``; items per call go to
        ``ml_model_call_items{model_name}``.
    """
    items_per_call = MODEL_CALL_ITEMS.labels(model)

    async def call(items: list[Any]) -> Sequence[Any]:
        items_per_call.observe(len(items))
        return await dependency.call(model, method, items)

    return Coalescer(call, max_items) if merge else call
