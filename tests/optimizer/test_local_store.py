"""The in-process store's layout: LRU order, the tag index at any size, shared tags, and honest byte counts."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from optimizer import Entry, sizing
from optimizer.cache import LocalStore


def _entry(key: str, value: object, *tags: str, stale: float = 0.0) -> Entry:
    fresh = 100.0 + len(key)
    return Entry(
        value=value,
        fresh_until=fresh,
        stale_until=fresh + stale,
        size=sizing.measure(key, value, len(tags)),
        tags=frozenset(tags),
        stored_at=1.0,
    )


def test_dropping_a_tag_drops_its_keys_whether_it_holds_few_or_many():
    store = LocalStore(max_entries=10_000, max_bytes=10**9)
    for n in range(100):
        store.put(f"big:{n}", _entry(f"big:{n}", b"x", "big", f"own:{n}"))
    for n in range(3):
        store.put(f"small:{n}", _entry(f"small:{n}", b"y", "small"))
    store.delete("big:7")
    assert sorted(store.delete_tag("small")) == ["small:0", "small:1", "small:2"]
    assert len(store.delete_tag("big")) == 99
    assert store.entries == 0 and store.bytes == 0
    # The other tags of the dropped entries were forgotten too.
    assert store.delete_tag("own:3") == []


def test_entries_with_the_same_single_tag_share_one_frozenset_and_keep_their_values():
    store = LocalStore(max_entries=100, max_bytes=10**9)
    store.put("a", _entry("a", b"1", "student:1"))
    store.put("b", _entry("b", b"2", "student:1", stale=5.0))
    a, b = store.get("a"), store.get("b")
    assert a is not None and b is not None
    assert a.tags is b.tags == frozenset({"student:1"})
    assert a.stale_until == a.fresh_until and b.stale_until == b.fresh_until + 5.0
    assert (a.value, b.value) == (b"1", b"2")


def test_the_least_recently_read_entry_goes_first_and_the_byte_total_follows():
    size = sizing.measure("k0", b"v")
    store = LocalStore(max_entries=100, max_bytes=3 * size)
    for n in range(3):
        store.put(f"k{n}", _entry(f"k{n}", b"v"))
    store.get("k0")
    store.put("k3", _entry("k3", b"v"))
    assert not store.contains("k1") and all(store.contains(k) for k in ("k0", "k2", "k3"))
    assert store.evictions == 1 and store.bytes == 3 * size
    assert store.put("huge", _entry("huge", b"z" * (4 * size))) is False
    assert store.entries == 3


@pytest.mark.parametrize("tagged", [True, False], ids=["a-tag-per-student", "untagged"])
def test_the_measured_bytes_agree_with_real_allocations_within_ten_percent(tagged: bool):
    # Portal-shaped entries: a ~230-byte page fragment per key, a dozen keys per student tag or none.
    store = LocalStore(max_entries=100_000, max_bytes=10**10)
    gc.collect()
    tracemalloc.start()
    for n in range(6_000):
        key = f"v1:{n // 12}:{n % 12}"
        value = (b'"attempt_count":2\n[' + b"%08d" % n * 24)[:230]
        tags = (f"student:{n // 12}",) if tagged else ()
        store.put(key, _entry(key, value, *tags))
    gc.collect()
    real, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert 0.9 <= store.bytes / real <= 1.1, (store.bytes, real)
