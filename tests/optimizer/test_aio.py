"""The asyncio front: coroutines share the optimizer's single-flight, errors and invalidation ordering,
and the event loop keeps running while the backend is slow."""

from __future__ import annotations

import asyncio

from optimizer import OptimizerConfig
from optimizer.aio import AsyncOptimizer
from tests.optimizer.conftest import CountingBackend
from tests.support import wait_until


def test_fifty_coroutines_on_one_cold_key_make_exactly_one_backend_call(make_optimizer):
    backend = CountingBackend(hold=True)
    front = AsyncOptimizer(make_optimizer(backend))

    async def scenario() -> list[dict]:
        calls = [asyncio.ensure_future(front("student:1", user_id=f"s{i}")) for i in range(50)]
        await asyncio.to_thread(wait_until, lambda: front.stats()["joins"] == 49, what="49 coroutines joined")
        backend.release.set()
        return await asyncio.gather(*calls)

    results = asyncio.run(scenario())
    front.close()
    assert backend.calls == ["student:1"]
    assert all(result is results[0] for result in results)


def test_the_event_loop_keeps_running_while_the_backend_is_held(make_optimizer):
    backend = CountingBackend(hold=True)
    front = AsyncOptimizer(make_optimizer(backend))

    async def scenario() -> None:
        call = asyncio.ensure_future(front("k"))
        await asyncio.to_thread(
            wait_until, lambda: backend.in_flight == 1, what="the load reached the backend"
        )
        ticked = asyncio.Event()
        asyncio.get_running_loop().call_soon(ticked.set)
        await asyncio.wait_for(ticked.wait(), timeout=10)  # the loop ran other work meanwhile
        assert not call.done()
        backend.release.set()
        assert await call == {"key": "k", "version": 0}

    asyncio.run(scenario())
    front.close()


def test_a_backend_error_reaches_every_coroutine_that_joined(make_optimizer):
    backend = CountingBackend(hold=True)
    backend.error = ConnectionError("db down")
    front = AsyncOptimizer(make_optimizer(backend))

    async def scenario() -> list[object]:
        calls = [asyncio.ensure_future(front("k")) for _ in range(5)]
        await asyncio.to_thread(wait_until, lambda: front.stats()["joins"] == 4, what="4 coroutines joined")
        backend.release.set()
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(scenario())
    front.close()
    assert len(backend.calls) == 1
    assert all(isinstance(r, ConnectionError) and r is results[0] for r in results)


def test_an_awaited_invalidation_beats_a_load_that_started_before_it(make_optimizer):
    backend = CountingBackend(hold=True)
    front = AsyncOptimizer(make_optimizer(backend))

    async def scenario() -> tuple[dict, dict]:
        early = asyncio.ensure_future(front("k"))
        await asyncio.to_thread(wait_until, lambda: backend.in_flight == 1, what="the early load started")
        backend.version = 1
        await front.invalidate("k")
        late = asyncio.ensure_future(front("k"))
        await asyncio.to_thread(wait_until, lambda: len(backend.calls) == 2, what="the late load started")
        backend.release.set()
        return await early, await late

    early, late = asyncio.run(scenario())
    front.close()
    assert (early["version"], late["version"]) == (0, 1)


def test_get_many_and_prefetch_batch_through_the_front(make_optimizer):
    backend = CountingBackend()
    front = AsyncOptimizer(
        make_optimizer(backend, batch_fn=backend.batch, config=OptimizerConfig(max_batch=10))
    )

    async def scenario() -> dict:
        front.prefetch(["a", "b"])
        await asyncio.to_thread(wait_until, lambda: front.optimizer.cache.entries == 2, what="prefetched")
        values = await front.get_many(["a", "b", "c"])
        await front.aclose()
        return values

    values = asyncio.run(scenario())
    assert [v["key"] for v in values.values()] == ["a", "b", "c"]
    assert backend.batches == [["a", "b"], ["c"]]
