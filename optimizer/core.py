"""`Optimizer`: wraps an expensive `fn(key)` so that most calls never reach it, without stale reads after a write.

The app builds one `Optimizer` per expensive function at start-up and calls it
instead of the function (the portal wraps `get_all_exam_attempts`). Each call:

1. The gate picks the cohort for the user: optimized or direct. Direct calls
   `fn(key)` straight, exactly what the app did without the layer.
2. For the optimized cohort the local circuit breaker (breaker.py) may still
   send the call direct; it judges the outcomes these metrics count, so the
   call path does no bookkeeping for it. Such a call is counted in `optimizer_gate_bypass_total{reason}` and,
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
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from optimizer.batching import Batcher
from optimizer.breaker import CLOSED, OPEN, REASON_FLAG_CHANGED, CircuitBreaker
from optimizer.cache import Cache, Entry, InProcessCache
from optimizer.entry import NO_TAGS
from optimizer.errors import FaultInjected, OptimizerClosed
from optimizer.gate import Decision, Gate, StaticGate
from optimizer.grouping import Grouper
from optimizer.ideal import IdealWindows
from optimizer.loading import BatchFn, Fn, Item, Loader
from optimizer.metrics import DIRECT, LATENCY_BUCKETS, OPTIMIZED, FnMetrics
from optimizer.settings import OptimizerConfig
from optimizer.writing import WriteThrough

logger = logging.getLogger(__name__)

Tags = Callable[[str], Iterable[str]]

_perf_counter = time.perf_counter


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
        self._tags = tags
        self._clock = clock
        self._gate: Gate = gate if gate is not None else StaticGate(True)
        self._cache: Cache = cache if cache is not None else InProcessCache(self.config)
        self._cache.attach(name=name, config=self.config, clock=clock)
        self._cache.on_remote_invalidation(self._on_remote_invalidation)
        self._read = self._cache.reader()
        self._ideal = IdealWindows()
        self._window_end = self._ideal.ends.get
        self._prefix = f"v{self.config.schema_version}:"
        self._metrics = m = FnMetrics(name, registry)
        self._count_hit = m.hit
        m.watch_cache(lambda: self._cache.bytes, lambda: self._cache.entries)
        self._breaker = CircuitBreaker(
            outcomes=m.outcomes, bounds=LATENCY_BUCKETS, clock=clock, on_transition=self._breaker_moved
        )
        m.watch_breaker(lambda: (self._breaker.transitions, self._breaker.state != CLOSED))
        watch_flag = getattr(self._gate, "on_flag_change", None)
        if callable(watch_flag):
            watch_flag(self._breaker.reset)
        m.watch_ideal(lambda: self._ideal.opened())
        self._applied: tuple[Mapping[str, Any] | None, OptimizerConfig] = (None, self.config)
        self._loader = Loader(
            name=name,
            fn=fn,
            batch_fn=batch_fn,
            cache=self._cache,
            metrics=m,
            config=self.config,
            current_config=lambda: self._applied[1],
            clock=clock,
        )
        self._closed = False

    # public API

    def __call__(self, key: str, *, user_id: str | None = None) -> Any:
        """Return `fn(key)`, served by the path the gate and the breaker choose for `user_id`."""
        # The hit path, `_route` inlined: no lock, one clock read, one metrics call (a cache hit
        # costs about as much as the rest together; see bench/optimizer_gate.py).
        if self._closed:
            raise OptimizerClosed(self.name)
        now = self._clock()
        breaker = self._breaker
        if now >= breaker.next_tick:
            breaker.tick(now, self._applied[1].breaker)
        decision = self._gate.decide(user_id)
        applied = self._applied
        if not decision.optimized or breaker.state is not CLOSED or decision.payload is not applied[0]:
            config = self._route_decided(decision, breaker, count=True)
            if config is None:
                return self._direct(key)
        else:
            config = applied[1]
        started = _perf_counter()
        versioned = self._prefix + key
        end = self._window_end(versioned)
        if end is None or now >= end:
            self._open_window(key, versioned, now, OPTIMIZED)
        if self.fault is None:
            entry = self._read(versioned)
            # `_fresh_until` written out: the hit path does without the call (bench/optimizer_gate.py).
            if entry is not None and now < entry.fresh_until and now < entry.stored_at + config.ttl_s:
                self._count_hit(_perf_counter() - started)
                return entry.value
        return self._call_slow(key, config, started)

    def _call_slow(self, key: str, config: OptimizerConfig, started: float) -> Any:
        """Everything but a plain fresh hit: the fault, stale hits, misses."""
        ok = False
        hits = misses = 0
        try:
            if self.fault is not None:
                _inject(self.fault)
            versioned = self._prefix + key
            entry = self._cache.get(versioned)
            if entry is not None:
                now = self._clock()
                fresh_until = _fresh_until(entry, config)
                if now < fresh_until:
                    hits = 1
                    ok = True
                    return entry.value
                if now < entry.stale_until and now < fresh_until + config.stale_s:
                    hits = 1
                    self._stale_hit(key, versioned, config)
                    ok = True
                    return entry.value
            misses = 1
            value = self._loader.load((key, versioned, self._tags_of(key)), config)
            ok = True
            return value
        finally:
            self._finish(started, ok, 1, hits, misses)

    def get_many(self, keys: Iterable[str], *, user_id: str | None = None) -> dict[str, Any]:
        """Return {key: fn(key)} for `keys`; the optimized path loads the misses with `batch_fn` if given.

        Counts one request per key and one latency observation per call.
        """
        keys = list(dict.fromkeys(keys))
        config = self._route(user_id)
        if config is None:
            return self._direct_many(keys)
        started = time.perf_counter()
        ok = False
        hits = 0
        missing: list[Item] = []
        try:
            if self.fault is not None:
                _inject(self.fault)
            out: dict[str, Any] = {}
            now = self._clock()
            window_end = self._window_end
            for key in keys:
                versioned = self._prefix + key
                end = window_end(versioned)
                if end is None or now >= end:
                    self._open_window(key, versioned, now, OPTIMIZED)
                entry = self._cache.get(versioned)
                if entry is not None:
                    fresh_until = _fresh_until(entry, config)
                    if now < fresh_until:
                        hits += 1
                        out[key] = entry.value
                        continue
                    if now < entry.stale_until and now < fresh_until + config.stale_s:
                        hits += 1
                        self._stale_hit(key, versioned, config)
                        out[key] = entry.value
                        continue
                missing.append((key, versioned, self._tags_of(key)))
            if missing:
                out.update(self._loader.load_many(missing, config))
            ok = True
            return {key: out[key] for key in keys}
        finally:
            self._finish(started, ok, len(keys), hits, len(missing))

    def invalidate(self, key: str) -> None:
        """Drop `key` from every cache tier and fence off its in-flight loads; returns once all will miss."""
        versioned = self._prefix + key
        self._loader.flights.invalidate_key(versioned)
        self._cache.invalidate(versioned)
        self._ideal.cut_key(versioned)
        self._metrics.count("invalidations")

    def invalidate_tag(self, tag: str) -> None:
        """Drop every entry tagged `tag` (see `tags=`) everywhere; returns once all will miss."""
        self._loader.flights.invalidate_tag(tag)
        self._cache.invalidate_tag(tag)
        self._ideal.cut_tag(tag)
        self._metrics.count("invalidations")

    def write_through(
        self, changed: Iterable[str], *, also: Iterable[str] = (), user_id: str | None = None
    ) -> WriteThrough:
        """Open a write of the `changed` keys that reads back their values and those of `also` (optimizer.writing).

        `keys` of the result lists what the write should read back: `changed` and the keys
        of `also` not fresh in the cache, or none when `user_id` is not on the optimized path
        (its `commit` then only invalidates `changed`).
        """
        changed = list(dict.fromkeys(changed))
        wanted: list[str] = []
        if not self._closed and self._route(user_id, count=False) is not None:
            now = self._clock()
            wanted = changed + [
                key for key in dict.fromkeys(also) if key not in changed and not self._fresh(key, now)
            ]
        return WriteThrough(
            self._loader,
            changed=changed,
            items=[(key, self._prefix + key, self._tags_of(key)) for key in wanted],
            versioned=self._prefix.__add__,
            invalidated=self._written,
        )

    def prefetch(self, keys: Iterable[str], *, user_id: str | None = None) -> None:
        """Warm `keys` in the background in batches of `max_batch`; never blocks.

        With `user_id`, only when the gate and the breaker put that user on the optimized path.
        """
        if self._closed or (user_id is not None and self._route(user_id, count=False) is None):
            return
        items = [(key, self._prefix + key, self._tags_of(key)) for key in dict.fromkeys(keys)]
        self._loader.prefetch(items)

    def stats(self) -> dict[str, Any]:
        """Counts since start for summaries: requests/backend_calls/errors by path, hits, misses, joins, ..."""
        out = self._metrics.snapshot()
        out.update(
            cache_bytes=self._cache.bytes,
            cache_entries=self._cache.entries,
            evictions=self._cache.evictions,
            in_flight=self._loader.flights.in_flight(),
            backend_in_use=self._loader.limiter.in_use,
            backend_peak_in_use=self._loader.limiter.peak_in_use,
            breaker=self._breaker.state,
            breaker_trips=self._breaker.trips,
            ideal_fetches=dict(zip(("optimized", "direct"), self._ideal.opened(), strict=True)),
        )
        return out

    @property
    def breaker_state(self) -> str:
        """The local circuit breaker's state now: closed, open or half_open (no snapshot of the counts)."""
        return self._breaker.state

    @property
    def cache_bytes(self) -> int:
        """Bytes held by the in-process cache tier."""
        return self._cache.bytes

    @property
    def cache(self) -> Cache:
        return self._cache

    @property
    def grouper(self) -> Grouper:
        """Groups the misses of concurrent `get_many` calls into shared batch calls."""
        return self._loader.grouper

    @property
    def batcher(self) -> Batcher | None:
        """The time-window batcher, when a `batch_fn` was given."""
        return self._loader.batcher

    @property
    def effective_config(self) -> OptimizerConfig:
        """The config in force after the last flag payload seen."""
        return self._applied[1]

    def close(self) -> None:
        """Stop background work and release the cache's connections; later calls raise `OptimizerClosed`."""
        if self._closed:
            return
        self._closed = True
        self._loader.close()
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
        breaker = self._breaker
        now = self._clock()
        if now >= breaker.next_tick:
            breaker.tick(now, self._applied[1].breaker)
        return self._route_decided(self._gate.decide(user_id), breaker, count=count)

    def _route_decided(
        self, decision: Decision, breaker: CircuitBreaker, *, count: bool
    ) -> OptimizerConfig | None:
        """`_route` once the gate decided: the payload's config, or None when the breaker says direct."""
        if not decision.optimized:
            if decision.reason is not None and count:
                self._metrics.bypass(decision.reason)
            return None
        applied = self._applied
        config = applied[1] if decision.payload is applied[0] else self._config_for(decision.payload)
        if breaker.state is CLOSED:
            return config
        reason = breaker.admit()
        if reason is not None:
            if count:
                self._metrics.bypass(reason)
            return None
        return config

    def _config_for(self, payload: Mapping[str, Any] | None) -> OptimizerConfig:
        config, problems = self.config.with_payload(payload)
        for problem in problems:
            logger.warning("optimizer %s: %s", self.name, problem)
        self._applied = (payload, config)
        return config

    # direct path

    def _direct(self, key: str) -> Any:
        self._see_direct((key,))
        started = time.perf_counter()
        ok = False
        try:
            value = self._fn(key)
            ok = True
            return value
        finally:
            self._metrics.call(DIRECT, time.perf_counter() - started, ok=ok, backend=1)

    def _direct_many(self, keys: list[str]) -> dict[str, Any]:
        self._see_direct(keys)
        started = time.perf_counter()
        ok = False
        calls = 0
        try:
            out: dict[str, Any] = {}
            for key in keys:
                calls += 1
                out[key] = self._fn(key)
            ok = True
            return out
        finally:
            self._metrics.call(
                DIRECT, time.perf_counter() - started, ok=ok, requests=len(keys), backend=calls
            )

    # the ideal's windows (ideal.py)

    def _see_direct(self, keys: Iterable[str]) -> None:
        now = self._clock()
        window_end = self._window_end
        for key in keys:
            versioned = self._prefix + key
            end = window_end(versioned)
            if end is None or now >= end:
                self._open_window(key, versioned, now, DIRECT)

    def _open_window(self, key: str, versioned: str, now: float, path: int) -> None:
        config = self._applied[1]
        self._ideal.open(
            versioned, now=now, tau=config.ttl_s + config.stale_s, path=path, tags=lambda: self._tags_of(key)
        )

    # optimized path helpers

    def _finish(self, started: float, ok: bool, requests: int, hits: int, misses: int) -> None:
        elapsed = _perf_counter() - started
        self._metrics.call(OPTIMIZED, elapsed, ok=ok, requests=requests, hits=hits, misses=misses)

    def _breaker_moved(self, state: str, reason: str | None) -> None:
        breaker = self._applied[1].breaker
        if state == OPEN:
            logger.warning(
                "optimizer %s: circuit breaker open (%s: %s): calls go direct for %ss, then probe",
                self.name,
                reason,
                self._breaker.evidence,
                breaker.cooldown_s,
            )
        elif state == CLOSED and reason == REASON_FLAG_CHANGED:
            logger.warning("optimizer %s: circuit breaker closed: the flag's definition changed", self.name)
        elif state == CLOSED:
            logger.warning("optimizer %s: circuit breaker closed: the probes passed", self.name)
        else:
            logger.warning(
                "optimizer %s: circuit breaker half-open: %s of calls probe the optimized path",
                self.name,
                breaker.probe_share,
            )

    def _fresh(self, key: str, now: float) -> bool:
        entry = self._cache.get(self._prefix + key)
        return entry is not None and now < _fresh_until(entry, self._applied[1])

    def _written(self, versioned: str) -> None:
        self._ideal.cut_key(versioned)
        self._metrics.count("invalidations")

    def _stale_hit(self, key: str, versioned: str, config: OptimizerConfig) -> None:
        self._metrics.count("stale_served")
        self._loader.refresh((key, versioned, self._tags_of(key)), config)

    def _tags_of(self, key: str) -> frozenset[str]:
        return frozenset(self._tags(key)) if self._tags is not None else NO_TAGS

    def _on_remote_invalidation(self, key: str | None, tag: str | None) -> None:
        flights = self._loader.flights
        if key is not None:
            flights.invalidate_key(key)
            self._ideal.cut_key(key)
        elif tag is not None:
            flights.invalidate_tag(tag)
            self._ideal.cut_tag(tag)
        else:  # a reconnect, not a write: the ideal's windows stay
            flights.invalidate_all()


def _fresh_until(entry: Entry, config: OptimizerConfig) -> float:
    """When `entry` stops being fresh: its own bound, or sooner if the flag's payload shortened the TTL since."""
    return min(entry.fresh_until, entry.stored_at + config.ttl_s)


def _inject(fault: Fault) -> None:
    if fault.latency_s > 0:
        time.sleep(fault.latency_s)
    if fault.error_rate > 0 and random.random() < fault.error_rate:
        raise FaultInjected(f"injected fault (error_rate={fault.error_rate})")
