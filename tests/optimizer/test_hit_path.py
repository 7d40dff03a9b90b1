"""The lock-free hit path: per-thread counts folded exactly at scrape time, and lock-free cache reads that
never serve an entry the store has dropped."""

from __future__ import annotations

import threading

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from optimizer import InProcessCache, Optimizer, OptimizerConfig, Packing, StaticGate, sizing
from optimizer.cache import Entry, LocalStore
from optimizer.tiered import TieredStore
from tests.optimizer.conftest import CountingBackend, run_threads
from tests.optimizer.store_checks import FRAGMENT, ZDICT, operations, replay_against_a_model

FN = "fn"


def test_counts_from_many_threads_are_folded_exactly(clock):
    registry = CollectorRegistry()
    backend = CountingBackend()
    opt = Optimizer(backend, name=FN, registry=registry, clock=clock)
    direct = Optimizer(backend, name=FN, registry=registry, clock=clock, gate=StaticGate(False))
    try:

        def work(i: int) -> None:
            for n in range(300):
                opt(f"k{n % 10}")
                if n % 3 == 0:
                    direct("d")
                opt.get_many([f"k{i}", f"m{i}"])

        run_threads(16, work)

        def value(name: str, labels: dict[str, str]) -> float:
            found = registry.get_sample_value(name, labels)
            assert found is not None, name
            return found

        assert value("optimizer_requests_total", {"fn": FN, "path": "optimized"}) == 16 * 300 * 3
        assert value("optimizer_requests_total", {"fn": FN, "path": "direct"}) == 16 * 100
        assert value("optimizer_call_seconds_count", {"fn": FN, "path": "optimized"}) == 16 * 300 * 2
        hits = value("optimizer_cache_hits_total", {"fn": FN})
        misses = value("optimizer_cache_misses_total", {"fn": FN})
        joins = value("optimizer_dedup_joins_total", {"fn": FN})
        assert hits + misses == 16 * 300 * 3
        # Every miss either reached the backend or joined a load that did.
        backend_optimized = value("optimizer_backend_calls_total", {"fn": FN, "path": "optimized"})
        assert backend_optimized + joins == misses
        assert backend_optimized + 16 * 100 == len(backend.calls)
        assert opt.stats()["hits"] + direct.stats()["hits"] == hits
    finally:
        opt.close()
        direct.close()


def test_threads_that_ended_are_folded_in_and_forgotten(clock):
    registry = CollectorRegistry()
    opt = Optimizer(CountingBackend(), name=FN, registry=registry, clock=clock)
    try:
        for _ in range(50):  # a thread per request, as some servers do
            thread = threading.Thread(target=lambda: [opt("k") for _ in range(10)])
            thread.start()
            thread.join()
        opt("k")  # this thread registers too, folding the ended ones in
        assert registry.get_sample_value("optimizer_requests_total", {"fn": FN, "path": "optimized"}) == 501
        assert len(opt._metrics._shards) <= 2  # only live threads keep a list of their own
    finally:
        opt.close()


@settings(max_examples=150, deadline=None)
@given(ops=operations(200), max_entries=st.integers(1, 6))  # some larger than the whole budget
def test_a_lock_free_read_returns_exactly_what_the_store_holds(ops, max_entries):
    store = LocalStore(max_entries=max_entries, max_bytes=10_000)

    def put(key: str, value: bytes, tag: str) -> bool:
        return store.put(key, Entry(value, 1.0, 1.0, size=10 * len(value), tags=frozenset({tag})))

    for _ in replay_against_a_model(store, ops, put):
        assert store.entries <= max_entries


def test_recently_read_entries_outlive_unread_ones(clock):
    opt = Optimizer(
        lambda k: k,
        name="lru",
        config=OptimizerConfig(max_entries=3),
        registry=CollectorRegistry(),
        clock=clock,
    )
    try:
        for key in ("a", "b", "c"):
            opt(key)
        opt("a")  # read without a lock: marked, applied at the next store that evicts
        opt("d")
        opt("e")
        assert opt.cache.contains("v1:a") and not opt.cache.contains("v1:b")
    finally:
        opt.close()


def test_the_tiered_layouts_hit_path_marks_hot_reads_as_recent_too(clock):
    # Four fragments fit the hot tier; what it pushes out is packed, and stays served.
    one = sizing.measure("v1:a", FRAGMENT)
    cache = InProcessCache(max_bytes=4 * one * 100, packing=Packing(zdict=ZDICT), hot_share=0.01 + 1e-9)
    opt = Optimizer(
        lambda k: FRAGMENT,
        name="tiered_lru",
        config=OptimizerConfig(),
        cache=cache,
        registry=CollectorRegistry(),
        clock=clock,
    )
    try:
        for key in ("a", "b", "c", "d"):
            opt(key)
        opt("a")  # through the hot tier's reader: marked, applied at the next store that pushes out
        opt("e")
        opt("f")
        store = cache._store
        assert isinstance(store, TieredStore)
        assert store.hot_entries == 4 and store.entries == 6
        hot = {key for key in "abcdef" if store._hot.contains(f"v1:{key}")}
        assert "a" in hot and "b" not in hot
        assert opt("b") == FRAGMENT and opt.stats()["hits"] == 2  # served from the packed tier
    finally:
        opt.close()
