"""Behaviour of `Optimizer` with the in-process cache: single-flight, TTL, stale-while-revalidate,
invalidation, errors, the direct path, payload overrides and metrics."""

from __future__ import annotations

import logging
import threading

import pytest
from prometheus_client import CollectorRegistry

from optimizer import BreakerConfig, Fault, FaultInjected, Optimizer, OptimizerConfig, StaticGate
from tests.optimizer.conftest import CountingBackend, FakeClock, run_threads
from tests.support import wait_until


def test_fifty_threads_on_one_cold_key_make_exactly_one_backend_call(make_optimizer):
    backend = CountingBackend(hold=True)
    opt = make_optimizer(backend)

    def release_when_all_joined() -> None:
        wait_until(lambda: opt.stats()["joins"] == 49, what="49 callers joined the flight")
        backend.release.set()

    results = run_threads(
        50, lambda i: opt("student:1", user_id=f"s{i}"), while_running=release_when_all_joined
    )

    assert backend.calls == ["student:1"]
    assert all(result == {"key": "student:1", "version": 0} for result in results)
    assert all(result is results[0] for result in results)
    stats = opt.stats()
    assert stats["backend_calls"] == {"optimized": 1, "direct": 0}
    assert stats["requests"] == {"optimized": 50, "direct": 0}
    assert stats["misses"] == 50 and stats["joins"] == 49


def test_a_failing_backend_raises_its_error_to_every_joined_caller_and_is_not_cached(make_optimizer):
    backend = CountingBackend(hold=True)
    backend.error = ConnectionError("db down")
    opt = make_optimizer(backend)

    def release_when_all_joined() -> None:
        wait_until(lambda: opt.stats()["joins"] == 9, what="9 callers joined")
        backend.release.set()

    results = run_threads(10, lambda i: opt("k"), while_running=release_when_all_joined)

    assert len(backend.calls) == 1
    assert all(isinstance(r, ConnectionError) for r in results)
    assert all(r is results[0] for r in results)
    backend.error = None
    assert opt("k") == {"key": "k", "version": 0}
    assert len(backend.calls) == 2
    assert opt.stats()["errors"] == {"optimized": 10, "direct": 0}


def test_a_value_is_served_from_cache_until_its_ttl_expires(make_optimizer, clock: FakeClock):
    backend = CountingBackend()
    opt = make_optimizer(backend, config=OptimizerConfig(ttl_s=10, jitter=0))

    assert opt("k") == {"key": "k", "version": 0}
    backend.version = 1
    clock.advance(9.9)
    assert opt("k")["version"] == 0
    clock.advance(0.2)
    assert opt("k")["version"] == 1
    assert len(backend.calls) == 2


def test_jitter_only_shortens_the_ttl(make_optimizer, clock: FakeClock):
    backend = CountingBackend()
    opt = make_optimizer(backend, config=OptimizerConfig(ttl_s=10, jitter=0.5))
    for i in range(50):
        opt(f"k{i}")
    clock.advance(10)
    for i in range(50):
        opt(f"k{i}")
    assert len(backend.calls) == 100


def test_stale_value_is_served_while_exactly_one_background_refresh_runs(make_optimizer, clock: FakeClock):
    backend = CountingBackend()
    opt = make_optimizer(backend, config=OptimizerConfig(ttl_s=10, stale_s=30, jitter=0))
    opt("k")
    backend.release.clear()
    backend.version = 1
    clock.advance(15)

    served = [opt("k") for _ in range(20)]

    assert all(value["version"] == 0 for value in served)
    wait_until(lambda: backend.in_flight == 1, what="the refresh reached the backend")
    backend.release.set()
    wait_until(lambda: opt("k")["version"] == 1, what="the refreshed value")
    assert backend.calls == ["k", "k"]
    assert opt.stats()["refreshes"] == 1


def test_concurrent_stale_reads_start_exactly_one_refresh(make_optimizer, clock: FakeClock):
    backend = CountingBackend()
    opt = make_optimizer(backend, config=OptimizerConfig(ttl_s=10, stale_s=30, jitter=0))
    opt("k")
    backend.release.clear()
    backend.version = 1
    clock.advance(15)

    served = run_threads(30, lambda i: opt("k"))

    assert all(value["version"] == 0 for value in served)
    wait_until(lambda: backend.in_flight == 1, what="the refresh reached the backend")
    backend.release.set()
    wait_until(lambda: opt.stats()["in_flight"] == 0, what="the refresh finished")
    assert backend.calls == ["k", "k"]
    assert opt.stats()["refreshes"] == 1
    assert opt("k")["version"] == 1


def test_a_failed_refresh_keeps_serving_the_stale_value_and_caches_no_error(make_optimizer, clock: FakeClock):
    backend = CountingBackend()
    opt = make_optimizer(backend, config=OptimizerConfig(ttl_s=10, stale_s=30, jitter=0))
    opt("k")
    backend.error = ConnectionError("db down")
    clock.advance(15)
    assert opt("k")["version"] == 0
    wait_until(lambda: len(backend.calls) == 2 and opt.stats()["in_flight"] == 0, what="the refresh failed")
    assert opt("k")["version"] == 0  # still within the grace; a new refresh is started
    backend.error = None
    backend.version = 1
    wait_until(lambda: opt("k")["version"] == 1, what="a later refresh succeeded")


def test_past_the_stale_grace_a_call_waits_for_fresh_data(make_optimizer, clock: FakeClock):
    backend = CountingBackend()
    opt = make_optimizer(backend, config=OptimizerConfig(ttl_s=10, stale_s=5, jitter=0))
    opt("k")
    backend.version = 1
    clock.advance(15.1)
    assert opt("k")["version"] == 1


def test_never_serves_stale_when_stale_s_is_zero(make_optimizer, clock: FakeClock):
    backend = CountingBackend()
    opt = make_optimizer(backend, config=OptimizerConfig(ttl_s=10, stale_s=0, jitter=0))
    opt("k")
    backend.version = 1
    clock.advance(10.01)
    assert opt("k")["version"] == 1


def test_invalidate_makes_the_next_call_read_the_backend(make_optimizer):
    backend = CountingBackend()
    opt = make_optimizer(backend)
    opt("k")
    backend.version = 1
    opt.invalidate("k")
    assert opt("k")["version"] == 1


def test_invalidate_tag_drops_every_entry_of_one_student_only(make_optimizer):
    backend = CountingBackend()
    opt = make_optimizer(backend, tags=lambda key: [f"student:{key.split('/')[0]}"])
    for key in ("42/series-1", "42/series-2", "7/series-1"):
        opt(key)
    backend.version = 1

    opt.invalidate_tag("student:42")

    assert opt("42/series-1")["version"] == 1
    assert opt("42/series-2")["version"] == 1
    assert opt("7/series-1")["version"] == 0
    assert len(backend.calls) == 5


def test_an_invalidation_beats_a_fetch_that_started_before_it(make_optimizer):
    backend = CountingBackend(hold=True)
    opt = make_optimizer(backend)
    early: list[dict] = []
    reader = threading.Thread(target=lambda: early.append(opt("k")))
    reader.start()
    wait_until(lambda: backend.in_flight == 1, what="the early fetch reached the backend")

    backend.version = 1  # the write, while the early fetch holds pre-write data
    opt.invalidate("k")
    late: list[dict] = []
    late_reader = threading.Thread(target=lambda: late.append(opt("k")))
    late_reader.start()
    wait_until(lambda: len(backend.calls) == 2, what="the late reader started its own fetch")
    backend.release.set()
    reader.join(10)
    late_reader.join(10)

    assert early[0]["version"] == 0  # asked before the write: may see the old data
    assert late[0]["version"] == 1  # asked after the invalidation returned: must not
    assert opt("k")["version"] == 1
    assert len(backend.calls) == 2


def test_an_invalidated_fetch_never_lands_in_the_cache(make_optimizer):
    backend = CountingBackend(hold=True)
    opt = make_optimizer(backend)
    reader = threading.Thread(target=lambda: opt("k"))
    reader.start()
    wait_until(lambda: backend.in_flight == 1, what="the fetch reached the backend")
    opt.invalidate("k")
    backend.release.set()
    reader.join(10)

    assert not opt.cache.contains("v1:k")
    backend.version = 1
    assert opt("k")["version"] == 1


def test_a_tag_invalidation_beats_an_in_flight_fetch_of_a_tagged_key(make_optimizer):
    backend = CountingBackend(hold=True)
    opt = make_optimizer(backend, tags=lambda key: ["student:42"])
    reader = threading.Thread(target=lambda: opt("42/a"))
    reader.start()
    wait_until(lambda: backend.in_flight == 1, what="the fetch reached the backend")
    opt.invalidate_tag("student:42")
    backend.release.set()
    reader.join(10)
    backend.version = 1
    assert opt("42/a")["version"] == 1


def test_schema_version_is_part_of_the_key(make_optimizer, registry: CollectorRegistry, clock: FakeClock):
    backend = CountingBackend()
    from optimizer import InProcessCache

    shared = InProcessCache()
    v1 = make_optimizer(backend, config=OptimizerConfig(schema_version=1), cache=shared)
    v1("k")
    assert shared.contains("v1:k")
    v2 = Optimizer(
        backend,
        name="other",
        config=OptimizerConfig(schema_version=2),
        cache=shared,
        registry=registry,
        clock=clock,
    )
    try:
        v2("k")
        assert len(backend.calls) == 2
        assert shared.contains("v2:k")
    finally:
        v2.close()


def test_the_direct_cohort_calls_the_function_every_time(make_optimizer):
    backend = CountingBackend()
    opt = make_optimizer(backend, gate=StaticGate(False))
    for _ in range(3):
        opt("k")
    assert backend.calls == ["k", "k", "k"]
    stats = opt.stats()
    assert stats["requests"] == {"optimized": 0, "direct": 3}
    assert stats["backend_calls"] == {"optimized": 0, "direct": 3}
    assert stats["hits"] == stats["misses"] == 0


def test_get_many_batches_the_misses_and_serves_the_hits(make_optimizer):
    backend = CountingBackend()
    opt = make_optimizer(backend, batch_fn=backend.batch, config=OptimizerConfig(max_batch=3))
    opt("a")
    values = opt.get_many(["a", "b", "c", "d", "e", "b"])

    assert list(values) == ["a", "b", "c", "d", "e"]
    assert all(values[k]["key"] == k for k in values)
    assert backend.batches[-2:] == [["b", "c", "d"], ["e"]]
    assert opt.get_many(["b", "e"]) == {"b": values["b"], "e": values["e"]}
    assert len(backend.batches) == 3  # the first was "a" through the batcher


def test_get_many_without_batch_fn_loads_each_miss_once(make_optimizer):
    backend = CountingBackend()
    opt = make_optimizer(backend)
    assert set(opt.get_many(["a", "b", "a"])) == {"a", "b"}
    assert sorted(backend.calls) == ["a", "b"]


def test_prefetch_warms_keys_in_one_batch_in_the_background(make_optimizer):
    backend = CountingBackend()
    opt = make_optimizer(backend, batch_fn=backend.batch)
    opt.prefetch([f"42/s{i}" for i in range(12)])
    wait_until(lambda: opt.cache.entries == 12, what="12 keys warmed")

    assert backend.batches == [[f"42/s{i}" for i in range(12)]]
    for i in range(12):
        opt(f"42/s{i}")
    assert len(backend.batches) == 1 and backend.calls == []


def test_prefetch_does_not_block_on_a_slow_backend(make_optimizer):
    backend = CountingBackend(hold=True)
    opt = make_optimizer(backend, batch_fn=backend.batch)
    opt.prefetch(["a", "b"])  # returns although the backend is held
    wait_until(lambda: backend.in_flight == 1, what="the prefetch reached the backend")
    backend.release.set()
    wait_until(lambda: opt.cache.entries == 2, what="prefetched keys stored")


def test_prefetch_for_a_direct_cohort_user_does_nothing(make_optimizer):
    backend = CountingBackend()
    opt = make_optimizer(backend, batch_fn=backend.batch, gate=StaticGate(False))
    opt.prefetch(["a"], user_id="s1")
    opt.close()
    assert backend.batches == []


def test_payload_overrides_the_ttl(make_optimizer, clock: FakeClock):
    backend = CountingBackend()
    opt = make_optimizer(
        backend, config=OptimizerConfig(ttl_s=100, jitter=0), gate=StaticGate(True, {"ttl_s": 1})
    )
    opt("k")
    clock.advance(1.5)
    opt("k")
    assert len(backend.calls) == 2
    assert opt.effective_config.ttl_s == 1


def test_a_bad_payload_value_is_logged_and_ignored(make_optimizer, clock: FakeClock, caplog):
    backend = CountingBackend()
    payload = {"ttl_s": "soon", "max_batch": 0, "stale_s": 5, "breaker_error_rate": 7}
    opt = make_optimizer(backend, config=OptimizerConfig(ttl_s=10), gate=StaticGate(True, payload))
    with caplog.at_level(logging.WARNING, logger="optimizer.core"):
        assert opt("k") == {"key": "k", "version": 0}
    effective = opt.effective_config
    assert (effective.ttl_s, effective.max_batch, effective.stale_s) == (10, 100, 5)
    assert effective.breaker.error_rate == BreakerConfig().error_rate
    messages = " ".join(record.getMessage() for record in caplog.records)
    assert "ttl_s" in messages and "max_batch" in messages and "breaker_error_rate" in messages


def test_fault_is_injected_into_the_optimized_path_only(make_optimizer):
    backend = CountingBackend()
    optimized = make_optimizer(backend)
    direct = make_optimizer(backend, name="direct_fn", gate=StaticGate(False))
    optimized.fault = direct.fault = Fault(error_rate=1.0)

    with pytest.raises(FaultInjected):
        optimized("k")
    assert direct("k") == {"key": "k", "version": 0}
    optimized.fault = None
    assert optimized("k") == {"key": "k", "version": 0}


def test_metric_families_follow_the_contract_and_are_shared_by_several_functions(registry, clock):
    a = Optimizer(CountingBackend(), name="fn_a", registry=registry, clock=clock)
    b = Optimizer(CountingBackend(), name="fn_b", registry=registry, clock=clock, gate=StaticGate(False))
    try:
        a("x")
        a("x")
        b("y")
        value = registry.get_sample_value
        assert value("optimizer_requests_total", {"fn": "fn_a", "path": "optimized"}) == 2
        assert value("optimizer_backend_calls_total", {"fn": "fn_a", "path": "optimized"}) == 1
        assert value("optimizer_cache_hits_total", {"fn": "fn_a"}) == 1
        assert value("optimizer_cache_misses_total", {"fn": "fn_a"}) == 1
        assert value("optimizer_requests_total", {"fn": "fn_b", "path": "direct"}) == 1
        assert value("optimizer_backend_calls_total", {"fn": "fn_b", "path": "direct"}) == 1
        assert value("optimizer_call_seconds_count", {"fn": "fn_a", "path": "optimized"}) == 2
        assert value("optimizer_cache_entries", {"fn": "fn_a"}) == 1
        assert value("optimizer_cache_bytes", {"fn": "fn_a"}) == a.cache_bytes > 0
        names = {metric.name for metric in registry.collect()}
        assert {
            "optimizer_requests",
            "optimizer_backend_calls",
            "optimizer_cache_hits",
            "optimizer_cache_misses",
            "optimizer_dedup_joins",
            "optimizer_batch_calls",
            "optimizer_batch_keys",
            "optimizer_errors",
            "optimizer_call_seconds",
            "optimizer_cache_bytes",
            "optimizer_cache_entries",
            "optimizer_gate_bypass",
        } <= names
    finally:
        a.close()
        b.close()


def test_latency_buckets_resolve_a_p95_between_one_millisecond_and_five_seconds():
    from optimizer.metrics import LATENCY_BUCKETS

    assert LATENCY_BUCKETS[0] <= 0.001 and LATENCY_BUCKETS[-1] >= 5
    ratios = [b / a for a, b in zip(LATENCY_BUCKETS, LATENCY_BUCKETS[1:], strict=False)]
    assert max(ratios) <= 1.3


def test_calls_after_close_raise(make_optimizer):
    from optimizer import OptimizerClosed

    opt = make_optimizer(CountingBackend())
    opt.close()
    with pytest.raises(OptimizerClosed):
        opt("k")


def test_close_fails_loads_that_will_never_finish(make_optimizer, clock: FakeClock):
    from optimizer import OptimizerClosed

    backend = CountingBackend()
    opt = make_optimizer(backend, config=OptimizerConfig(ttl_s=10, stale_s=60, jitter=0, refresh_workers=1))
    for key in ("a", "b"):
        opt(key)
    backend.release.clear()
    clock.advance(15)
    opt("a")  # its refresh holds the only worker
    wait_until(lambda: backend.in_flight == 1, what="the first refresh reached the backend")
    opt("b")  # its refresh is queued behind it
    clock.advance(60)  # past the grace: the next caller of "b" joins the queued refresh
    outcome: list[object] = []

    def call_b() -> None:
        try:
            outcome.append(opt("b"))
        except OptimizerClosed as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call_b)
    caller.start()
    wait_until(lambda: opt.stats()["joins"] == 1, what="a caller joined the queued refresh")

    closer = threading.Thread(target=opt.close)
    closer.start()
    backend.release.set()
    closer.join(10)
    caller.join(10)
    assert not caller.is_alive()
    assert isinstance(outcome[0], OptimizerClosed)


class SwitchableGate:
    """A gate whose payload the test changes, as a flag change would."""

    def __init__(self, payload: dict) -> None:
        self.payload = payload

    def decide(self, user_id):
        from optimizer import Decision

        return Decision(True, self.payload)


def test_a_ttl_lowered_by_the_payload_applies_to_entries_already_cached(make_optimizer, clock: FakeClock):
    backend = CountingBackend()
    gate = SwitchableGate({"ttl_s": 300})
    opt = make_optimizer(backend, config=OptimizerConfig(jitter=0), gate=gate)
    opt("k")
    clock.advance(5)
    opt("k")
    assert len(backend.calls) == 1
    gate.payload = {"ttl_s": 2}
    opt("k")
    assert len(backend.calls) == 2
