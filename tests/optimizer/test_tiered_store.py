"""The tiered in-process store: stores served from the hot tier as given, what it pushes out packed and
served from there, a key in one tier at a time, invalidations reaching both, and byte counts that match
real allocations."""

from __future__ import annotations

import gc
import random
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer import Entry, InProcessCache, OptimizerConfig, Packing
from optimizer.sizing import measure
from optimizer.tiered import TieredStore
from tests.optimizer.conftest import FakeClock
from tests.optimizer.store_checks import (
    ZDICT,
    BytesBackend,
    fragment,
    operations,
    reads_beside_writers,
    replay_against_a_model,
)


def _entry(key: str, value: bytes, *tags: str, fresh: float = 100.0) -> Entry:
    return Entry(value, fresh, fresh + 5.0, measure(key, value, len(tags)), frozenset(tags), fresh - 30.0)


def _store(
    max_entries: int = 100_000,
    max_bytes: int = 10**8,
    hot_share: float = 0.25,
    pack_above: float | None = None,
) -> TieredStore:
    return TieredStore(
        max_entries=max_entries,
        max_bytes=max_bytes,
        packing=Packing(zdict=ZDICT),
        hot_share=hot_share,
        pack_above=pack_above,
    )


def _put(store: TieredStore, key: str, value: bytes, *tags: str) -> bool:
    return store.put(key, _entry(key, value, *tags))


def test_a_stored_entry_is_served_from_the_hot_tier_as_it_was_given():
    store = _store()
    entry = _entry("v1:a", fragment(1), "student:1")
    store.put("v1:a", entry)
    assert store.get("v1:a") is entry
    assert store.entries == 1 and store.hot_entries == 1


def test_what_the_hot_tier_pushes_out_is_packed_and_served_from_there_with_its_bounds():
    # A hot tier that holds about two entries: the third store pushes the first out of it.
    store = _store(max_bytes=2_000_000, hot_share=(2.5 * measure("v1:0", fragment(0))) / 2_000_000)
    hot = [_entry(f"v1:{n}", fragment(n)) for n in range(3)]
    for n, entry in enumerate(hot):
        store.put(f"v1:{n}", entry)
    assert store.entries == 3 and store.hot_entries == 2
    first = store.get("v1:0")  # from the packed tier
    assert first is not None and first.value == fragment(0)
    assert (first.fresh_until, first.stale_until, first.stored_at) == (100.0, 105.0, 70.0)
    # A packed hit stays packed: the hot entries are not pushed out by reads.
    assert store.get("v1:0") is not first and store.hot_entries == 2
    assert all(store.get(f"v1:{n}").value is hot[n].value for n in (1, 2))
    _put(store, "v1:0", fragment(7))  # a new value replaces the packed one
    found = store.get("v1:0")
    assert found is not None and found.value == fragment(7)
    assert store.entries == 3 and store.evictions == 0
    _put(store, "v1:3", fragment(3))  # pushes v1:1 out
    assert store.entries == 4 and [store.get(f"v1:{n}").value for n in range(4)] == [
        fragment(7),
        fragment(1),
        fragment(2),
        fragment(3),
    ]


def test_an_invalidated_key_or_tag_leaves_whichever_tier_holds_it():
    store = _store(max_bytes=2_000_000, hot_share=(1.5 * measure("v1:0", fragment(0), 1)) / 2_000_000)
    _put(store, "v1:a", fragment(1), "student:1")
    _put(store, "v1:b", fragment(2), "student:1")  # pushes v1:a into the packed tier
    _put(store, "v1:c", fragment(3), "student:2")  # pushes v1:b too
    _put(store, "v1:d", fragment(4), "student:1")
    assert store.hot_entries == 1 and store.entries == 4
    assert sorted(store.delete_tag("student:1")) == ["v1:a", "v1:b", "v1:d"]
    assert [store.get(k) for k in ("v1:a", "v1:b", "v1:d")] == [None, None, None]
    store.delete("v1:c")
    assert store.get("v1:c") is None and store.entries == 0


def test_the_packed_tiers_evictions_are_the_stores_and_what_is_served_is_what_is_held():
    store = _store(max_bytes=200_000, hot_share=0.5)  # the packed tier holds fewer than 1,000 fragments
    for n in range(3_000):
        _put(store, f"v1:{n}", fragment(n))
    assert 0 < store.entries < 3_000 and store.evictions == 3_000 - store.entries
    served = [n for n in range(3_000) if store.get(f"v1:{n}") is not None]
    assert len(served) == store.entries and all(store.contains(f"v1:{n}") for n in served)
    assert all(store.get(f"v1:{n}").value == fragment(n) for n in served)


def _two_hot_fragments() -> TieredStore:
    return _store(max_bytes=2_000_000, hot_share=(2.5 * measure("v1:0", fragment(0), 1)) / 2_000_000)


def test_a_batch_store_leaves_what_it_pushes_out_served_until_settle_packs_it():
    store = _two_hot_fragments()
    store.put_many([(f"v1:{n}", _entry(f"v1:{n}", fragment(n))) for n in range(5)])
    assert store.waiting == 3 and store.hot_entries == 2 and store.entries == 5
    assert [store.get(f"v1:{n}").value for n in range(5)] == [fragment(n) for n in range(5)]
    store.settle()
    assert store.waiting == 0 and store.entries == 5
    assert [store.get(f"v1:{n}").value for n in range(5)] == [fragment(n) for n in range(5)]


def test_what_is_stored_again_or_invalidated_before_settle_is_not_packed_back():
    store = _two_hot_fragments()
    store.put_many([(f"v1:{n}", _entry(f"v1:{n}", fragment(n), "student:1")) for n in range(5)])
    assert store.waiting == 3  # v1:0, v1:1, v1:2
    store.delete("v1:0")
    assert store.delete_tag("student:1").count("v1:1") == 1
    _put(store, "v1:2", fragment(9))  # stored again: settles what waits, v1:2's old value among it
    store.settle()
    assert store.get("v1:0") is None and store.get("v1:1") is None
    assert store.get("v1:2").value == fragment(9) and store.waiting == 0
    assert store.entries == sum(store.contains(f"v1:{n}") for n in range(5))


def test_an_invalidation_that_lands_while_settle_compresses_wins():
    store = _two_hot_fragments()
    store.put_many([(f"v1:{n}", _entry(f"v1:{n}", fragment(n))) for n in range(3)])
    assert store.waiting == 1  # v1:0
    pack = store._packed.pack

    def pack_while_invalidated(key: str, entry: Entry) -> object:
        store.delete(key)  # another thread's invalidation, after settle took the batch, before it stores
        return pack(key, entry)

    store._packed.pack = pack_while_invalidated  # type: ignore[method-assign,assignment]
    store.settle()
    assert store.get("v1:0") is None and not store.contains("v1:0") and store.entries == 2


def test_the_optimizer_settles_the_tiered_layout_after_each_store(make_optimizer):
    config = OptimizerConfig()
    cache = InProcessCache(config, packing=Packing(zdict=ZDICT), hot_share=0.00005)  # about two fragments
    opt = make_optimizer(BytesBackend(), config=config, cache=cache, batch_fn=_batch)
    opt.get_many([f"k{n}" for n in range(12)])
    store = cache._store
    assert isinstance(store, TieredStore)
    assert store.waiting == 0 and store.entries == 12 and store.hot_entries < 12


def test_what_the_packed_tier_refuses_is_not_held_in_either_tier():
    store = _store()
    _put(store, "k", b"old")
    assert store.put("k", Entry({"not": "bytes"}, 100.0, 100.0, 500)) is False
    assert store.get("k") is None and store.entries == 0 and store.hot_entries == 0
    assert _put(store, "x" * 256, b"long key") is False and store.get("x" * 256) is None


def test_a_new_value_neither_tier_can_hold_leaves_no_older_one_behind():
    store = _store(max_bytes=200_000, hot_share=0.01)  # a hot tier of 2 KB
    _put(store, "v1:a", fragment(1))
    for n in range(10):  # pushes v1:a out of the hot tier, packed
        _put(store, f"v1:{n}", fragment(n))
    assert store.get("v1:a") is not None and store.waiting == 0
    huge = random.Random(1).randbytes(250_000)  # incompressible, larger than the whole budget
    store.put("v1:a", _entry("v1:a", huge))
    assert store.get("v1:a") is None and not store.contains("v1:a")


def _fill(store: TieredStore, count: int) -> None:
    for n in range(count):
        _put(store, f"v1:{n}", fragment(n))
        store.settle()


ONE = measure("v1:0", fragment(0))


def _elastic(budget: int) -> TieredStore:
    """A hot tier of at least 10 fragments that may grow to 1/20 of the budget while little is packed."""
    return _store(max_bytes=budget, hot_share=10 * ONE / budget, pack_above=0.05)


def test_a_working_set_that_fits_below_pack_above_is_held_as_objects_and_never_packed():
    store = _elastic(16 * 2**20)  # objects up to 840 KB: about 2,000 fragments
    _fill(store, 1_500)
    assert store.entries == store.hot_entries == 1_500 and store.waiting == 0
    assert all(store.get(f"v1:{n}").value == fragment(n) for n in range(1_500))


def test_past_pack_above_the_oldest_are_packed_until_the_objects_fit_beside_them():
    store = _elastic(16 * 2**20)
    _fill(store, 5_000)
    assert store.entries == 5_000 and store.evictions == 0 and store.waiting == 0
    assert 10 <= store.hot_entries < 2_000
    assert store.bytes <= 0.05 * 16 * 2**20
    assert [store.get(f"v1:{n}").value for n in range(5_000)] == [fragment(n) for n in range(5_000)]


def test_when_the_packed_tier_is_full_the_hot_tier_keeps_its_share():
    store = _elastic(400_000)
    fixed = _store(max_bytes=400_000, hot_share=10 * ONE / 400_000)
    for each in (store, fixed):
        _fill(each, 10_000)
    assert 0 < store.evictions and store.hot_entries >= 9
    assert (store.entries, store.hot_entries, store.bytes) == (fixed.entries, fixed.hot_entries, fixed.bytes)
    assert store.entries == sum(store.contains(f"v1:{n}") for n in range(10_000))


def test_hot_share_must_leave_room_for_both_tiers():
    for share in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="hot_share"):
            _store(hot_share=share)
    for above in (0.1, 1.5):
        with pytest.raises(ValueError, match="pack_above"):
            _store(hot_share=0.25, pack_above=above)
    with pytest.raises(ValueError, match="needs a packing"):
        InProcessCache(hot_share=0.1)


@settings(max_examples=150, deadline=None)
@given(ops=operations(40), max_entries=st.integers(1, 8), pack_above=st.sampled_from([0.01, 0.02, 0.05]))
def test_a_read_returns_exactly_what_the_store_holds(ops, max_entries, pack_above):
    # A hot tier of 1,200 bytes, allowed to grow to 2,400 or 6,000 while little is packed.
    store = _store(max_entries=max_entries, max_bytes=120_000, hot_share=0.01, pack_above=pack_above)
    read = store.reader()  # the optimizer's hit path: the hot tier's own reader, then the others
    for _ in replay_against_a_model(store, ops, lambda key, value, tag: _put(store, key, value, tag)):
        assert store.entries == sum(store.contains(f"k{probe}") for probe in range(13))
        for probe in (f"k{n}" for n in range(13)):
            found, expected = read(probe), store.get(probe)
            assert (found is None) == (expected is None), probe
            assert found is None or expected is None or found.value == expected.value, probe


def test_reads_beside_writers_never_see_another_keys_value():
    store = _store(max_entries=300, max_bytes=200_000, hot_share=0.1)
    assert reads_beside_writers(store, lambda key, value, tag: _put(store, key, value, tag)) == []
    assert store.hot_entries <= store.entries


def test_the_reported_bytes_agree_with_real_allocations_within_ten_percent():
    gc.collect()
    tracemalloc.start()
    store = _store(hot_share=0.02)  # a 2 MB hot tier: about a third of the entries below are hot
    for n in range(12_000):
        key = f"v1:{n // 12}:{n % 12}"
        _put(store, key, fragment(n) * 3, f"student:{n // 12}")
    gc.collect()
    real, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert 0 < store.hot_entries < store.entries == 12_000
    assert 0.9 <= store.bytes / real <= 1.1, (store.bytes, real)


def _batch(keys: list[str]) -> dict[str, bytes]:
    return {key: fragment(0) + key.encode() for key in keys}


def test_an_optimizer_on_the_tiered_layout_keeps_ttl_and_read_your_writes(make_optimizer, clock: FakeClock):
    backend = BytesBackend()
    config = OptimizerConfig(ttl_s=10, jitter=0)
    cache = InProcessCache(config, packing=Packing(zdict=ZDICT), hot_share=0.1)
    opt = make_optimizer(backend, config=config, cache=cache, tags=lambda key: [f"student:{key[0]}"])
    assert opt("1:a") == opt("1:a") == fragment(0) + b"1:a"
    opt("2:a")
    backend.version = 1
    clock.advance(9.9)
    assert opt("1:a") == fragment(0) + b"1:a"
    opt.invalidate_tag("student:1")
    assert opt("1:a") == fragment(1) + b"1:a" and opt("2:a") == fragment(0) + b"2:a"
    clock.advance(0.2)
    assert opt("2:a") == fragment(1) + b"2:a"
    assert backend.calls == ["1:a", "2:a", "1:a", "2:a"]
    assert opt.stats()["hits"] == 3 and opt.cache.entries == 2
