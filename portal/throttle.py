"""Bounds on the batch endpoint: a per-client rate limit and a cap on concurrent requests.

`portal.api` calls `BatchThrottle.admit` around each batch request. The rate
limit uses the `limits` library (moving window; in memory, or in Redis when the
portal has a Redis URL so that all instances share it).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from portal.errors import TooManyRequests
from portal.metrics import PortalMetrics


class BatchThrottle:
    """Refuses a batch request with 429 when its client is over the rate or all slots are busy."""

    def __init__(
        self, *, rate_limit: str, concurrency: int, metrics: PortalMetrics, redis_url: str | None = None
    ) -> None:
        self._item = parse(rate_limit)
        self._limiter = MovingWindowRateLimiter(storage_from_string(redis_url or "memory://"))
        self._slots = threading.BoundedSemaphore(concurrency)
        self._metrics = metrics
        self.rate_limit = rate_limit
        self.concurrency = concurrency

    @contextmanager
    def admit(self, client_id: str) -> Iterator[None]:
        """Hold one slot for the duration of the block, or raise TooManyRequests at once."""
        if not self._limiter.hit(self._item, "batch-attempts", client_id):
            self._metrics.batch_rejected.labels(reason="rate").inc()
            raise TooManyRequests(
                f"batch rate limit {self.rate_limit} exceeded",
                code="rate_limited",
                details={"limit": self.rate_limit},
            )
        # Waiting here would pile requests up behind slow backends; refusing keeps the pool free.
        if not self._slots.acquire(blocking=False):
            self._metrics.batch_rejected.labels(reason="concurrency").inc()
            raise TooManyRequests(
                f"{self.concurrency} batch requests already in progress",
                code="concurrency_limited",
                details={"concurrency": self.concurrency},
            )
        self._metrics.batch_in_flight.inc()
        try:
            yield
        finally:
            self._metrics.batch_in_flight.dec()
            self._slots.release()
