"""Loading keys the cache could not serve: single-flight leaders, batches, refreshes and prefetches.

`Optimizer` (core.py) hands every miss to `Loader.load` / `Loader.load_many`,
every stale hit to `Loader.refresh`, and `prefetch` to `Loader.prefetch`. The
loader makes sure that one key has at most one load in flight, that loads go
through the batcher (when there is a `batch_fn`) and the backend limiter, and
that a result lands in the cache only if no invalidation of its key or tags
happened since the load started: `invalidate_*` mark the in-flight flights, and
`_store` checks the mark while holding the flight lock (see singleflight.py),
with the shared tier fenced by the cache's own token.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from optimizer import sizing
from optimizer.batching import Batcher
from optimizer.cache import Cache, Entry
from optimizer.errors import MissingFromBatch, OptimizerClosed
from optimizer.grouping import Grouper
from optimizer.limits import BackendLimiter
from optimizer.metrics import OPTIMIZED, FnMetrics
from optimizer.settings import OptimizerConfig
from optimizer.singleflight import Flight, FlightTable, Write

logger = logging.getLogger(__name__)

Fn = Callable[[str], Any]
BatchFn = Callable[[list[str]], Mapping[str, Any]]

# (key as the app knows it, versioned cache key, tags)
Item = tuple[str, str, frozenset[str]]


class Loader:
    """Loads keys for one optimizer; thread-safe."""

    def __init__(
        self,
        *,
        name: str,
        fn: Fn,
        batch_fn: BatchFn | None,
        cache: Cache,
        metrics: FnMetrics,
        config: OptimizerConfig,
        current_config: Callable[[], OptimizerConfig],
        clock: Callable[[], float],
    ) -> None:
        self._name = name
        self._fn = fn
        self._batch_fn = batch_fn
        self._cache = cache
        self._metrics = metrics
        self._current_config = current_config
        self._clock = clock
        self.flights = FlightTable()
        self.limiter = BackendLimiter(
            max_concurrency=config.max_concurrency,
            rate_limit=config.rate_limit,
            timeout_s=config.queue_timeout_s,
            name=name,
        )
        self.batcher = Batcher(self._run_batch) if batch_fn is not None else None
        self.grouper = Grouper(self._run_batch)
        self._pool = ThreadPoolExecutor(config.refresh_workers, thread_name_prefix=f"optimizer-{name}")
        self._closed = False

    def load(self, item: Item, config: OptimizerConfig) -> Any:
        """Return the key's value: join its in-flight load or lead a new one."""
        key, versioned, tags = item
        flight, leader = self.flights.join_or_start(versioned, tags)
        if leader:
            self._lead(flight, key, config)
        else:
            self._metrics.add("joins")
        return flight.wait()

    def load_many(self, items: list[Item], config: OptimizerConfig) -> dict[str, Any]:
        """Return {key: value} for `items`, loading the keys this call leads in batches of `max_batch`."""
        flights: dict[str, Flight] = {}
        leading: list[tuple[str, Flight]] = []
        joined = self.flights.join_or_start_many([(versioned, tags) for _, versioned, tags in items])
        for (key, _, _), (flight, leader) in zip(items, joined, strict=True):
            flights[key] = flight
            if leader:
                leading.append((key, flight))
            else:
                self._metrics.add("joins")
        if leading:
            self._lead_many(leading, config)
        return {key: flight.wait() for key, flight in flights.items()}

    def refresh(self, item: Item, config: OptimizerConfig) -> None:
        """Reload a stale key in the background unless a load of it is already running."""
        key, versioned, tags = item
        if self._closed:
            return
        flight = self.flights.start_if_idle(versioned, tags)
        if flight is None:
            return
        self._metrics.count("refreshes")
        try:
            self._pool.submit(self._lead, flight, key, config)
        except RuntimeError:  # the pool was shut down by close()
            self.flights.finish(flight)
            flight.fail(OptimizerClosed(self._name))

    def prefetch(self, items: list[Item]) -> bool:
        """Load `items` in the background in batches; return False if the loader is closed."""
        if self._closed:
            return False
        try:
            self._pool.submit(self._prefetch, items)
        except RuntimeError:  # the pool was shut down by close()
            return False
        return True

    def close(self) -> None:
        self._closed = True
        if self.batcher is not None:
            self.batcher.flush()
        self._pool.shutdown(wait=True, cancel_futures=True)
        # Refreshes cancelled above never ran; nobody may keep waiting on their flights.
        self.flights.abandon(OptimizerClosed(self._name))

    # leading loads

    def _lead(self, flight: Flight, key: str, config: OptimizerConfig) -> None:
        """Load `key` for `flight`, store it unless invalidated meanwhile, and settle the flight."""
        fence = self._cache.fence(flight.key, flight.tags)
        try:
            if self.batcher is not None:
                value = self.batcher.load(
                    key, window_s=config.batch_window_ms / 1000, max_batch=config.max_batch
                )
            else:
                value = self._call_backend(key, config)
        except Exception as exc:  # noqa: BLE001 - the backend's own error, re-raised to every caller of the flight
            self.flights.finish(flight)
            flight.fail(exc)
            return
        self._store(flight, value, config, fence)
        flight.resolve(value)

    def _lead_many(self, leading: list[tuple[str, Flight]], config: OptimizerConfig) -> None:
        if self._batch_fn is None:
            for key, flight in leading:
                self._lead(flight, key, config)
            return
        for start in range(0, len(leading), config.max_batch):
            chunk = leading[start : start + config.max_batch]
            fences = [self._cache.fence(flight.key, flight.tags) for _, flight in chunk]
            try:
                values = self.grouper.load_many(
                    [key for key, _ in chunk],
                    max_batch=config.max_batch,
                    max_in_flight=config.max_batches_in_flight,
                )
            except Exception as exc:  # noqa: BLE001 - re-raised to every caller of these flights
                for _, flight in chunk:
                    self.flights.finish(flight)
                    flight.fail(exc)
                continue
            found = [
                (flight, values[key], fence)
                for (key, flight), fence in zip(chunk, fences, strict=True)
                if key in values
            ]
            self._store_many(found, config)
            for key, flight in chunk:
                if key in values:
                    flight.resolve(values[key])
                else:
                    self.flights.finish(flight)
                    flight.fail(MissingFromBatch(key))

    def _prefetch(self, items: list[Item]) -> None:
        config = self._current_config()
        now = self._clock()
        leading: list[tuple[str, Flight]] = []
        for key, versioned, tags in items:
            entry = self._cache.get(versioned)
            if entry is not None and now < entry.fresh_until:
                continue
            flight = self.flights.start_if_idle(versioned, tags)
            if flight is not None:
                leading.append((key, flight))
        self._metrics.count("prefetched", len(leading))
        if leading:
            self._lead_many(leading, config)

    # the backend

    def _call_backend(self, key: str, config: OptimizerConfig) -> Any:
        with self.limiter.slot(cap=config.max_concurrency):
            self._metrics.backend_call(OPTIMIZED)
            return self._fn(key)

    def _run_batch(self, keys: list[str]) -> Mapping[str, Any]:
        assert self._batch_fn is not None
        m = self._metrics
        with self.limiter.slot(cap=self._current_config().max_concurrency):
            m.backend_call(OPTIMIZED)
            m.add("batch_calls")
            m.add("batch_keys", len(keys))
            return self._batch_fn(keys)

    # writes through

    def open_writes(self, items: list[Item]) -> list[Write]:
        """A `Write` per item, fenced in the shared tier as a load is: see `Optimizer.write_through`."""
        return self.flights.open_writes([(v, tags, self._cache.fence(v, tags)) for _, v, tags in items])

    def store_written(self, writes: list[Write], values: Mapping[str, Any], changed: list[str]) -> None:
        """Drop the `changed` keys' older values and loads, then store `values` of the writes nothing else changed.

        `values` maps each write's versioned key to its value read with the write.
        Counted as one batched backend call of `len(values)` keys, if any.
        """
        config = self._current_config()
        if values:
            m = self._metrics
            m.backend_call(OPTIMIZED)
            m.add("batch_calls")
            m.add("batch_keys", len(values))
        flights = self.flights
        with flights.lock:
            for key in changed:
                flights.invalidate_key(key, sparing=writes)
        for key in changed:
            self._cache.invalidate(key)
        stored: list[tuple[Write, Entry]] = []
        if config.ttl_s > 0 or config.stale_s > 0:
            now = self._clock()
            for write in writes:
                if write.key in values and not write.invalidated:
                    entry = self._entry(write.key, values[write.key], write.tags, config, now)
                    self._cache.share(write.key, entry, write.fence)
                    stored.append((write, entry))
        # Under the lock: an invalidation either marked the write before this (no store) or removes the entry after.
        with flights.lock:
            self._cache.put_many([(write.key, entry) for write, entry in stored if not write.invalidated])
            flights.close_writes(writes)
        self._cache.settle()

    # storing

    def _entry(
        self, key: str, value: Any, tags: frozenset[str], config: OptimizerConfig, now: float
    ) -> Entry:
        # Jitter only shortens the TTL, so no entry outlives ttl_s.
        fresh_until = now + config.ttl_s * (1 - random.random() * config.jitter)
        return Entry(
            value=value,
            fresh_until=fresh_until,
            stale_until=fresh_until + config.stale_s,
            stored_at=now,
            size=sizing.measure(key, value, len(tags)),
            tags=tags,
        )

    def _store(self, flight: Flight, value: Any, config: OptimizerConfig, fence: Any) -> None:
        self._store_many([(flight, value, fence)], config)

    def _store_many(self, loaded: list[tuple[Flight, Any, Any]], config: OptimizerConfig) -> None:
        """Store each (flight, value, fence) unless its flight was invalidated; finish the flights.

        The flight lock is taken once for all of them: under a cold burst, a dozen
        acquisitions per page of one lock that every page's loads contend for cost
        more than the stores themselves.
        """
        if config.ttl_s <= 0 and config.stale_s <= 0:
            self.flights.finish_many(flight for flight, _, _ in loaded)
            return
        now = self._clock()
        stored: list[tuple[Flight, Entry]] = []
        for flight, value, fence in loaded:
            entry = self._entry(flight.key, value, flight.tags, config, now)
            if not flight.invalidated:
                self._cache.share(flight.key, entry, fence)
            stored.append((flight, entry))
        with self.flights.lock:
            self._cache.put_many([(flight.key, entry) for flight, entry in stored if not flight.invalidated])
            self.flights.finish_many(flight for flight, _ in stored)
        self._cache.settle()
