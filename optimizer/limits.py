"""Backend protection: a concurrency cap and a rate limit on calls that reach the wrapped function.

`Optimizer` wraps every optimized backend call (single loads, batches,
refreshes, prefetches) in `BackendLimiter.slot()`. The direct path does not
pass through it: direct means exactly what the app did before the layer.

The cap is a counter under a condition rather than a `threading.Semaphore`
because the flag payload may change `max_concurrency` at runtime. The rate limit
is the `limits` library's moving window over in-memory storage.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from optimizer.errors import Overloaded, RateLimited


class BackendLimiter:
    """Caps the backend calls in flight and their rate; thread-safe.

    :param max_concurrency: the initial cap; `slot(cap=...)` may pass the current one.
    :param rate_limit: `limits` notation such as "200/second", or None for no rate limit.
    :param timeout_s: longest a caller waits for a slot or for the rate limit.
    """

    def __init__(
        self, *, max_concurrency: int, rate_limit: str | None, timeout_s: float, name: str = "backend"
    ) -> None:
        self._cap = max_concurrency
        self._timeout_s = timeout_s
        self._cond = threading.Condition()
        self._in_use = 0
        self.peak_in_use = 0
        self._item = parse(rate_limit) if rate_limit else None
        self._storage = MemoryStorage() if rate_limit else None
        self._limiter = MovingWindowRateLimiter(self._storage) if self._storage else None
        self._name = name

    @property
    def in_use(self) -> int:
        return self._in_use

    @contextmanager
    def slot(self, *, cap: int | None = None, cost: int = 1) -> Iterator[None]:
        """Hold one backend slot for the body; raise `Overloaded` or `RateLimited` after the timeout."""
        deadline = time.monotonic() + self._timeout_s
        self._wait_for_rate(deadline, cost)
        with self._cond:
            if cap is not None and cap != self._cap:
                self._cap = cap
                self._cond.notify_all()
            if not self._cond.wait_for(lambda: self._in_use < self._cap, deadline - time.monotonic()):
                raise Overloaded(f"{self._name}: {self._cap} backend calls in flight for {self._timeout_s}s")
            self._in_use += 1
            self.peak_in_use = max(self.peak_in_use, self._in_use)
        try:
            yield
        finally:
            with self._cond:
                self._in_use -= 1
                self._cond.notify()

    def _wait_for_rate(self, deadline: float, cost: int) -> None:
        limiter, item = self._limiter, self._item
        if limiter is None or item is None:
            return
        while not limiter.hit(item, self._name, cost=cost):
            reset_at = limiter.get_window_stats(item, self._name).reset_time
            pause = min(max(reset_at - time.time(), 0.001), 0.05)
            if time.monotonic() + pause > deadline:
                raise RateLimited(f"{self._name}: backend rate limit {self._item} exhausted")
            # Waiting for the window to move is the point of a rate limit; there is no event to wait on.
            time.sleep(pause)
