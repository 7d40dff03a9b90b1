"""`Optimizer`: wraps an expensive `fn(key)` so that most calls never reach it, without stale reads after a write.

The app builds one `Optimizer` per expensive function at start-up and calls it
instead of the function (the portal wraps `get_all_exam_attempts`). Each call:

1. The gate picks the cohort for the user: optimized or direct. Direct calls
   `fn(key)` straight, exactly what the app did without the layer.
2. For the optimized cohort the local circuit breaker may still send the call
   direct. Such a call is counted in `optimizer_gate_bypass_total{reason}` and,
   like every other call that ran direct, under `path="direct"` in the request,
   backend, error and latency metrics: `path` names the path that served the call
   after the breaker, so the optimized path's error rate and p95 only describe
   calls the layer served. A gate that could not decide (flag never loaded) is
   counted as a bypass with reason `flag_unavailable`.
3. The optimized path: a fresh cache hit returns at once; a hit within the stale
   grace returns the stale value and starts at most one background refresh; a miss
   joins the key's in-flight load or leads a new one (through the batcher when
   a `batch_fn` was given), under the backend concurrency cap and rate limit.

Invalidation (`invalidate`, `invalidate_tag`) is synchronous: it first detaches
and marks the key's in-flight loads, so a fetch that started before the write
never lands in the cache, then drops the key from every cache tier. A load
stores its result while holding the flight lock and only if its flight was not
marked, so the two cannot interleave.

Cached values are shared between callers, not copied: treat them as read-only.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from optimizer import sizing
from optimizer.batching import Batcher
from optimizer.breaker import CircuitBreaker
from optimizer.cache import Cache, Entry, InProcessCache
from optimizer.errors import FaultInjected, MissingFromBatch, OptimizerClosed
from optimizer.gate import Gate, StaticGate
from optimizer.limits import BackendLimiter
from optimizer.metrics import FnMetrics
from optimizer.settings import OptimizerConfig
from optimizer.singleflight import Flight, FlightTable

logger = logging.getLogger(__name__)

Fn = Callable[[str], Any]
BatchFn = Callable[[list[str]], Mapping[str, Any]]
Tags = Callable[[str], Iterable[str]]


@dataclass(frozen=True)
class Fault:
    """Chaos injected into every optimized call: `latency_s` of delay, then an error with `error_rate` odds."""

    error_rate: float = 0.0
    latency_s: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.error_rate <= 1 or self.latency_s < 0:
            raise ValueError(f"Fault needs 0 <= error_rate <= 1 and latency_s >= 0, got {self}")


class Optimizer:
    """The optimization layer around one function; thread-safe. See the module docstring."""

    def __init__(
        self,
        fn: Fn,
        *,
        name: str,
        batch_fn: BatchFn | None = None,
        config: OptimizerConfig | None = None,
        cache: Cache | None = None,
        gate: Gate | None = None,
        tags: Tags | None = None,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.config = config or OptimizerConfig()
        self.fault: Fault | None = None
        self._fn = fn
        self._batch_fn = batch_fn
        self._tags = tags
        self._clock = clock
        self._gate: Gate = gate if gate is not None else StaticGate(True)
        self._cache: Cache = cache if cache is not None else InProcessCache(self.config)
        self._cache.attach(name=name, config=self.config, clock=clock)
        self._cache.on_remote_invalidation(self._on_remote_invalidation)
        self._prefix = f"v{self.config.schema_version}:"
        self._metrics = FnMetrics(name, registry)
        self._metrics.cache_bytes.set_function(lambda: self._cache.bytes)
        self._metrics.cache_entries.set_function(lambda: self._cache.entries)
        self._flights = FlightTable()
        self._breaker = CircuitBreaker(clock)
        self._limiter = BackendLimiter(
            max_concurrency=self.config.max_concurrency,
            rate_limit=self.config.rate_limit,
            timeout_s=self.config.queue_timeout_s,
            name=name,
        )
        self._batcher = Batcher(self._run_batch) if batch_fn is not None else None
        self._pool = ThreadPoolExecutor(self.config.refresh_workers, thread_name_prefix=f"optimizer-{name}")
        self._applied: tuple[Mapping[str, Any] | None, OptimizerConfig] = (None, self.config)
        self._closed = False

    # public API

    def __call__(self, key: str, *, user_id: str | None = None) -> Any:
        """Return `fn(key)`, served by the path the gate and the breaker choose for `user_id`."""
        config = self._route(user_id)
        if config is None:
            return self._direct(key)
        return self._optimized(key, config)

    def get_many(self, keys: Iterable[str], *, user_id: str | None = None) -> dict[str, Any]:
        """Return {key: fn(key)} for `keys`; the optimized path loads the misses with `batch_fn` if given."""
        keys = list(dict.fromkeys(keys))
        config = self._route(user_id)
        if config is None:
            return self._direct_many(keys)
        return self._optimized_many(keys, config)

    def invalidate(self, key: str) -> None:
        """Drop `key` from every cache tier and fence off its in-flight loads; returns once all will miss."""
        versioned = self._prefix + key
        self._flights.invalidate_key(versioned)
        self._cache.invalidate(versioned)
        self._metrics.count("invalidations")

    def invalidate_tag(self, tag: str) -> None:
        """Drop every entry tagged `tag` (see `tags=`) everywhere; returns once all will miss."""
        self._flights.invalidate_tag(tag)
        self._cache.invalidate_tag(tag)
        self._metrics.count("invalidations")

    def prefetch(self, keys: Iterable[str], *, user_id: str | None = None) -> None:
        """Warm `keys` in the background in batches of `max_batch`; never blocks.

        With `user_id`, only when the gate puts that user on the optimized path.
        """
        if self._closed:
            return
        if user_id is not None and self._route(user_id, count=False) is None:
            return
        try:
            self._pool.submit(self._prefetch, list(dict.fromkeys(keys)))
        except RuntimeError:  # the pool shut down in a race with close()
            return

    def stats(self) -> dict[str, Any]:
        """Counts since start for summaries: requests/backend_calls/errors by path, hits, misses, joins, ..."""
        out = self._metrics.snapshot()
        out.update(
            cache_bytes=self._cache.bytes,
            cache_entries=self._cache.entries,
            evictions=self._cache.evictions,
            in_flight=self._flights.in_flight(),
            backend_in_use=self._limiter.in_use,
            backend_peak_in_use=self._limiter.peak_in_use,
            breaker=self._breaker.state,
            breaker_trips=self._breaker.trips,
        )
        return out

    @property
    def cache_bytes(self) -> int:
        """Bytes held by the in-process cache tier."""
        return self._cache.bytes

    @property
    def cache(self) -> Cache:
        return self._cache

    @property
    def batcher(self) -> Batcher | None:
        return self._batcher

    @property
    def effective_config(self) -> OptimizerConfig:
        """The config in force after the last flag payload seen."""
        return self._applied[1]

    def close(self) -> None:
        """Stop background work and release the cache's connections; later calls raise `OptimizerClosed`."""
        if self._closed:
            return
        self._closed = True
        if self._batcher is not None:
            self._batcher.flush()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._cache.close()

    def __enter__(self) -> Optimizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # routing

    def _route(self, user_id: str | None, *, count: bool = True) -> OptimizerConfig | None:
        """Return the config to serve optimized with, or None to go direct."""
        if self._closed:
            raise OptimizerClosed(self.name)
        decision = self._gate.decide(user_id)
        if not decision.optimized:
            if decision.reason is not None and count:
                self._metrics.bypass(decision.reason)
            return None
        config = self._config_for(decision.payload)
        reason = self._breaker.check(config.breaker)
        if reason is not None:
            if count:
                self._metrics.bypass(reason)
            return None
        return config

    def _config_for(self, payload: Mapping[str, Any] | None) -> OptimizerConfig:
        applied = self._applied
        if payload is applied[0]:
            return applied[1]
        config, problems = self.config.with_payload(payload)
        for problem in problems:
            logger.warning("optimizer %s: %s", self.name, problem)
        self._applied = (payload, config)
        return config

    # direct path

    def _direct(self, key: str) -> Any:
        m = self._metrics
        m.requests["direct"].inc()
        m.backend_calls["direct"].inc()
        m.count("requests.direct")
        m.count("backend_calls.direct")
        started = time.perf_counter()
        try:
            return self._fn(key)
        except Exception:
            m.errors["direct"].inc()
            m.count("errors.direct")
            raise
        finally:
            m.call_seconds["direct"].observe(time.perf_counter() - started)

    def _direct_many(self, keys: list[str]) -> dict[str, Any]:
        m = self._metrics
        m.requests["direct"].inc(len(keys))
        m.count("requests.direct", len(keys))
        started = time.perf_counter()
        try:
            out = {}
            for key in keys:
                m.backend_calls["direct"].inc()
                m.count("backend_calls.direct")
                out[key] = self._fn(key)
            return out
        except Exception:
            m.errors["direct"].inc()
            m.count("errors.direct")
            raise
        finally:
            m.call_seconds["direct"].observe(time.perf_counter() - started)

    # optimized path

    def _optimized(self, key: str, config: OptimizerConfig) -> Any:
        return self._served(lambda: self._get(key, config), config, 1)

    def _optimized_many(self, keys: list[str], config: OptimizerConfig) -> dict[str, Any]:
        return self._served(lambda: self._get_many(keys, config), config, len(keys))  # type: ignore[no-any-return]

    def _served(self, body: Callable[[], Any], config: OptimizerConfig, requests: int) -> Any:
        m = self._metrics
        m.requests["optimized"].inc(requests)
        m.count("requests.optimized", requests)
        started = time.perf_counter()
        ok = False
        try:
            fault = self.fault
            if fault is not None:
                _inject(fault)
            value = body()
            ok = True
            return value
        except Exception:
            m.errors["optimized"].inc()
            m.count("errors.optimized")
            raise
        finally:
            elapsed = time.perf_counter() - started
            m.call_seconds["optimized"].observe(elapsed)
            tripped = self._breaker.record(config.breaker, ok=ok, latency_s=elapsed)
            if tripped is not None:
                logger.warning(
                    "optimizer %s: circuit breaker open (%s), calls go direct for %ss",
                    self.name,
                    tripped,
                    config.breaker.cooldown_s,
                )

    def _get(self, key: str, config: OptimizerConfig) -> Any:
        versioned = self._prefix + key
        entry = self._cache.get(versioned)
        if entry is not None:
            served = self._serve(key, versioned, entry, config)
            if served is not _MISS:
                return served
        self._miss()
        flight, leader = self._flights.join_or_start(versioned, self._tags_of(key))
        if leader:
            self._lead(flight, key, config)
        else:
            self._joined()
        return flight.wait()

    def _get_many(self, keys: list[str], config: OptimizerConfig) -> dict[str, Any]:
        out: dict[str, Any] = {}
        flights: dict[str, Flight] = {}
        leading: list[tuple[str, Flight]] = []
        for key in keys:
            versioned = self._prefix + key
            entry = self._cache.get(versioned)
            if entry is not None:
                served = self._serve(key, versioned, entry, config)
                if served is not _MISS:
                    out[key] = served
                    continue
            self._miss()
            flight, leader = self._flights.join_or_start(versioned, self._tags_of(key))
            flights[key] = flight
            if leader:
                leading.append((key, flight))
            else:
                self._joined()
        if leading:
            self._lead_many(leading, config)
        for key, flight in flights.items():
            out[key] = flight.wait()
        return out

    def _serve(self, key: str, versioned: str, entry: Entry, config: OptimizerConfig) -> Any:
        """Return the entry's value if it may be served now (starting a refresh if stale), else _MISS."""
        now = self._clock()
        if now < entry.fresh_until:
            self._hit()
            return entry.value
        if now < entry.stale_until and now < entry.fresh_until + config.stale_s:
            self._hit()
            self._metrics.count("stale_served")
            self._refresh(key, versioned, config)
            return entry.value
        return _MISS

    def _hit(self) -> None:
        self._metrics.hits.inc()
        self._metrics.count("hits")

    def _miss(self) -> None:
        self._metrics.misses.inc()
        self._metrics.count("misses")

    def _joined(self) -> None:
        self._metrics.joins.inc()
        self._metrics.count("joins")

    def _tags_of(self, key: str) -> frozenset[str]:
        return frozenset(self._tags(key)) if self._tags is not None else frozenset()

    # loading

    def _lead(self, flight: Flight, key: str, config: OptimizerConfig) -> None:
        """Load `key` for `flight`, store it unless invalidated meanwhile, and settle the flight."""
        fence = self._cache.fence(flight.key, flight.tags)
        try:
            if self._batcher is not None:
                value = self._batcher.load(
                    key, window_s=config.batch_window_ms / 1000, max_batch=config.max_batch
                )
            else:
                value = self._call_backend(key, config)
        except Exception as exc:  # noqa: BLE001 - the backend's own error, re-raised to every caller of the flight
            self._flights.finish(flight)
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
                values = self._run_batch([key for key, _ in chunk])
            except Exception as exc:  # noqa: BLE001 - re-raised to every caller of these flights
                for _, flight in chunk:
                    self._flights.finish(flight)
                    flight.fail(exc)
                continue
            for (key, flight), fence in zip(chunk, fences, strict=True):
                if key in values:
                    self._store(flight, values[key], config, fence)
                    flight.resolve(values[key])
                else:
                    self._flights.finish(flight)
                    flight.fail(MissingFromBatch(key))

    def _call_backend(self, key: str, config: OptimizerConfig) -> Any:
        with self._limiter.slot(cap=config.max_concurrency):
            self._metrics.backend_calls["optimized"].inc()
            self._metrics.count("backend_calls.optimized")
            return self._fn(key)

    def _run_batch(self, keys: list[str]) -> Mapping[str, Any]:
        assert self._batch_fn is not None
        config = self._applied[1]
        m = self._metrics
        with self._limiter.slot(cap=config.max_concurrency):
            m.backend_calls["optimized"].inc()
            m.batch_calls.inc()
            m.batch_keys.inc(len(keys))
            m.count("backend_calls.optimized")
            m.count("batch_calls")
            m.count("batch_keys", len(keys))
            return self._batch_fn(keys)

    def _store(self, flight: Flight, value: Any, config: OptimizerConfig, fence: Any) -> None:
        if config.ttl_s <= 0 and config.stale_s <= 0:
            self._flights.finish(flight)
            return
        now = self._clock()
        # Jitter only shortens the TTL, so no entry outlives ttl_s.
        fresh_until = now + config.ttl_s * (1 - random.random() * config.jitter)
        entry = Entry(
            value=value,
            fresh_until=fresh_until,
            stale_until=fresh_until + config.stale_s,
            size=sizing.measure(flight.key, value),
            tags=flight.tags,
        )
        if not flight.invalidated:
            self._cache.share(flight.key, entry, fence)
        with self._flights.lock:
            if not flight.invalidated:
                self._cache.put(flight.key, entry)
            self._flights.finish(flight)

    def _refresh(self, key: str, versioned: str, config: OptimizerConfig) -> None:
        """Start one background refresh of a stale key unless a load of it is already running."""
        if self._closed:
            return
        flight = self._flights.start_if_idle(versioned, self._tags_of(key))
        if flight is None:
            return
        self._metrics.count("refreshes")
        try:
            self._pool.submit(self._lead, flight, key, config)
        except RuntimeError:  # shut down by close()
            self._flights.finish(flight)
            flight.fail(OptimizerClosed(self.name))

    def _prefetch(self, keys: list[str]) -> None:
        config = self._applied[1]
        now = self._clock()
        leading: list[tuple[str, Flight]] = []
        for key in keys:
            versioned = self._prefix + key
            entry = self._cache.get(versioned)
            if entry is not None and now < entry.fresh_until:
                continue
            flight = self._flights.start_if_idle(versioned, self._tags_of(key))
            if flight is not None:
                leading.append((key, flight))
        self._metrics.count("prefetched", len(leading))
        if leading:
            self._lead_many(leading, config)

    def _on_remote_invalidation(self, key: str | None, tag: str | None) -> None:
        if key is not None:
            self._flights.invalidate_key(key)
        elif tag is not None:
            self._flights.invalidate_tag(tag)
        else:
            self._flights.invalidate_all()


class _Miss:
    __slots__ = ()


_MISS: Any = _Miss()


def _inject(fault: Fault) -> None:
    if fault.latency_s > 0:
        time.sleep(fault.latency_s)
    if fault.error_rate > 0 and random.random() < fault.error_rate:
        raise FaultInjected(f"injected fault (error_rate={fault.error_rate})")
