"""`AsyncOptimizer`: the asyncio front of an `Optimizer`, for async apps.

Every call runs the optimizer's thread-safe path on a worker thread of the
front's own pool, so the event loop never blocks on the backend, on a lock or on
Redis. Single-flight, the cache, invalidation ordering, the breaker and the
metrics are the wrapped optimizer's own: coroutines and threads calling the
same optimizer share one in-flight load per key and one cache.

The price is a thread hop per call (tens of microseconds), paid also on hits;
an app on threads should call the `Optimizer` directly.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from optimizer.core import Optimizer


class AsyncOptimizer:
    """Awaitable calls on `optimizer`; `max_threads` bounds the calls waiting on it at once."""

    def __init__(self, optimizer: Optimizer, *, max_threads: int = 64) -> None:
        self.optimizer = optimizer
        self._pool = ThreadPoolExecutor(max_threads, thread_name_prefix=f"optimizer-aio-{optimizer.name}")

    async def __call__(self, key: str, *, user_id: str | None = None) -> Any:
        """Return `fn(key)` as `Optimizer.__call__` does, without blocking the event loop."""
        return await self._run(functools.partial(self.optimizer, key, user_id=user_id))

    async def get_many(self, keys: Iterable[str], *, user_id: str | None = None) -> dict[str, Any]:
        """Return {key: fn(key)} as `Optimizer.get_many` does."""
        result: dict[str, Any] = await self._run(
            functools.partial(self.optimizer.get_many, list(keys), user_id=user_id)
        )
        return result

    async def invalidate(self, key: str) -> None:
        """Return once every instance will miss `key` (a Redis tier waits for acknowledgements)."""
        await self._run(functools.partial(self.optimizer.invalidate, key))

    async def invalidate_tag(self, tag: str) -> None:
        """Return once every instance will miss every entry tagged `tag`."""
        await self._run(functools.partial(self.optimizer.invalidate_tag, tag))

    def prefetch(self, keys: Iterable[str], *, user_id: str | None = None) -> None:
        """Warm `keys` in the background; never blocks, so no await."""
        self.optimizer.prefetch(keys, user_id=user_id)

    def stats(self) -> dict[str, Any]:
        return self.optimizer.stats()

    async def aclose(self) -> None:
        """Close the optimizer and this front's threads."""
        await self._run(self.optimizer.close)
        self._pool.shutdown(wait=False)

    def close(self) -> None:
        """Close the optimizer and this front's threads from outside an event loop."""
        self.optimizer.close()
        self._pool.shutdown(wait=True)

    async def _run(self, call: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)
