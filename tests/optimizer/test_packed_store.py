"""The packed in-process store: values and bounds read back as stored, CLOCK eviction, the tag index,
lock-free reads that never return another key's value, and byte counts that match real allocations."""

from __future__ import annotations

import gc
import random
import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer import Entry, InProcessCache, OptimizerConfig, Packing
from optimizer.packed import PackedStore
from tests.optimizer.conftest import FakeClock
from tests.optimizer.store_checks import (
    ZDICT,
    BytesBackend,
    fragment,
    operations,
    reads_beside_writers,
    replay_against_a_model,
)
from tests.support import wait_until


def _entry(value: bytes, *tags: str, fresh: float = 100.0, stale: float = 0.0, stored: float = 70.0) -> Entry:
    return Entry(
        value=value,
        fresh_until=fresh,
        stale_until=fresh + stale,
        size=0,
        tags=frozenset(tags),
        stored_at=stored,
    )


def _store(max_entries: int = 100_000, max_bytes: int = 10**9, zdict: bytes = ZDICT) -> PackedStore:
    return PackedStore(max_entries=max_entries, max_bytes=max_bytes, packing=Packing(zdict=zdict))


def test_values_and_freshness_bounds_read_back_as_stored_never_later():
    for zdict in (ZDICT, b""):
        store = _store(zdict=zdict)
        store.put("v1:a", _entry(fragment(1), fresh=1000.123456789, stale=7.3, stored=970.987654321))
        store.put("v1:b", _entry(b"", fresh=5.0, stored=float("-inf")))
        a, b = store.get("v1:a"), store.get("v1:b")
        assert a is not None and b is not None
        assert a.value == fragment(1) and a.fresh_until == 1000.123456789
        # float32 distances: rounded so that an entry never lives longer than it was stored for.
        assert 970.98 < a.stored_at <= 970.987654321
        assert 1007.42 < a.stale_until <= 1007.423456789
        assert b.value == b"" and b.stored_at == float("-inf") and b.stale_until == 5.0
        assert store.get("v1:c") is None and store.get("v1:") is None


def test_keys_that_are_prefixes_of_each_other_stay_apart():
    store = _store()
    for key in ("v1:1:1", "v1:1:12", "v1:1:123", "v1:1:1é"):
        store.put(key, _entry(key.encode()))
    for key in ("v1:1:1", "v1:1:12", "v1:1:123", "v1:1:1é"):
        found = store.get(key)
        assert found is not None and found.value == key.encode()
    store.delete("v1:1:12")
    assert store.get("v1:1:12") is None and store.get("v1:1:123") is not None


def test_what_it_cannot_hold_it_refuses_and_forgets():
    store = _store(max_bytes=2_000)
    store.put("k", _entry(b"old"))
    assert store.put("k", _entry({"not": "bytes"})) is False  # type: ignore[arg-type]
    assert store.get("k") is None
    assert store.put("x" * 256, _entry(b"long key")) is False
    assert store.put("huge", _entry(random.Random(1).randbytes(3_000))) is False  # incompressible
    assert store.entries == 0


def test_dropping_a_tag_drops_its_keys_whether_it_holds_few_or_many():
    store = _store()
    for n in range(100):
        store.put(f"big:{n}", _entry(b"x", "big", f"own:{n}"))
    for n in range(3):
        store.put(f"small:{n}", _entry(b"y", "small"))
    store.delete("big:7")
    assert sorted(store.delete_tag("small")) == ["small:0", "small:1", "small:2"]
    assert len(store.delete_tag("big")) == 99
    assert store.entries == 0
    assert store.delete_tag("own:3") == []  # the other tags of the dropped entries were forgotten too
    store.put("again", _entry(b"z", "small"))
    assert store.delete_tag("small") == ["again"]


def test_an_unread_entry_goes_before_a_read_one():
    store = _store(max_entries=3)
    for n in range(3):
        store.put(f"k{n}", _entry(b"v"))
    store.get("k0")
    store.put("k3", _entry(b"v"))
    assert not store.contains("k1") and all(store.contains(k) for k in ("k0", "k2", "k3"))
    assert store.evictions == 1 and store.entries == 3


def test_the_byte_budget_holds_while_values_are_replaced_and_the_arena_is_rebuilt():
    # Well above the codec's own fixed state (its primed compressor, about 88 KB), which the budget counts.
    store = _store(max_bytes=300_000)
    for n in range(15_000):
        key = f"v1:{n % 3_000}"
        store.put(key, _entry(fragment(n), f"student:{n % 250}"))
        assert store.bytes <= 1.25 * 300_000
    assert 0 < store.entries < 3_000 and store.evictions > 0
    for n in range(12_000, 15_000):  # what is held is the last value stored for its key
        found = store.get(f"v1:{n % 3_000}")
        assert found is None or found.value == fragment(n)


def test_the_reported_bytes_agree_with_real_allocations_within_ten_percent():
    # Portal-shaped entries: a ~230-byte page fragment per key, a dozen keys per student tag.
    gc.collect()
    tracemalloc.start()
    store = _store()
    for n in range(12_000):
        store.put(f"v1:{n // 12}:{n % 12}", _entry(fragment(n) * 3, f"student:{n // 12}"))
    gc.collect()
    real, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert 0.9 <= store.bytes / real <= 1.1, (store.bytes, real)


@settings(max_examples=150, deadline=None)
@given(ops=operations(400), max_entries=st.integers(1, 6))
def test_a_read_returns_exactly_what_the_store_holds(ops, max_entries):
    store = _store(max_entries=max_entries, max_bytes=3_000)
    for _ in replay_against_a_model(store, ops, lambda key, value, tag: store.put(key, _entry(value, tag))):
        assert store.entries <= max_entries


def test_lock_free_reads_beside_writers_never_see_another_keys_value():
    store = _store(max_entries=300, max_bytes=40_000)
    assert reads_beside_writers(store, lambda key, value, tag: store.put(key, _entry(value, tag))) == []


def _packed(config: OptimizerConfig) -> InProcessCache:
    return InProcessCache(config, packing=Packing(zdict=ZDICT))


def test_an_optimizer_on_the_packed_layout_keeps_ttl_and_read_your_writes(make_optimizer, clock: FakeClock):
    backend = BytesBackend()
    config = OptimizerConfig(ttl_s=10, jitter=0)
    opt = make_optimizer(
        backend, config=config, cache=_packed(config), tags=lambda key: [f"student:{key[0]}"]
    )
    assert opt("1:a") == opt("1:a") == fragment(0) + b"1:a"
    opt("2:a")
    backend.version = 1
    clock.advance(9.9)
    assert opt("1:a") == fragment(0) + b"1:a"
    opt.invalidate_tag("student:1")  # a write: the next read sees it
    assert opt("1:a") == fragment(1) + b"1:a" and opt("2:a") == fragment(0) + b"2:a"
    clock.advance(0.2)
    assert opt("2:a") == fragment(1) + b"2:a"
    assert backend.calls == ["1:a", "2:a", "1:a", "2:a"]
    assert opt.stats()["hits"] == 3 and opt.cache.entries == 2


def test_the_packed_layout_serves_stale_while_one_refresh_runs(make_optimizer, clock: FakeClock):
    backend = BytesBackend()
    config = OptimizerConfig(ttl_s=10, stale_s=30, jitter=0)
    opt = make_optimizer(backend, config=config, cache=_packed(config))
    opt("k")
    backend.version = 1
    clock.advance(15)
    assert opt("k") == fragment(0) + b"k"
    wait_until(lambda: opt("k") == fragment(1) + b"k", what="the refreshed value")
    assert opt.stats()["refreshes"] >= 1
    clock.advance(40.1)  # past the grace: the call waits for fresh data
    backend.version = 2
    assert opt("k") == fragment(2) + b"k"


def test_the_packed_layout_serves_values_that_are_not_bytes_without_caching_them(make_optimizer):
    calls: list[str] = []

    def backend(key: str) -> dict[str, str]:
        calls.append(key)
        return {"key": key}

    config = OptimizerConfig()
    opt = make_optimizer(backend, config=config, cache=_packed(config))
    assert opt("k") == opt("k") == {"key": "k"}
    assert calls == ["k", "k"] and opt.cache.entries == 0
