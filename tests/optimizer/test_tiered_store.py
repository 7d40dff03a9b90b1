"""The tiered in-process store: packed hits copied into the hot tier, the hot tier never holding a key
the packed tier dropped, no copy bringing back an invalidated value, and byte counts that match real
allocations."""

from __future__ import annotations

import gc
import threading
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer import Entry, InProcessCache, OptimizerConfig, Packing
from optimizer.sizing import measure
from optimizer.tiered import TieredStore
from tests.optimizer.conftest import FakeClock

FRAGMENT = b'"attempt_count":2,"best_score":%d\n[{"id":%d,"exam_id":%d,"score":%d}]'
ZDICT = FRAGMENT % (88, 12345, 21, 88) * 4


def _fragment(n: int) -> bytes:
    return FRAGMENT % (n % 100, n, n % 60, n % 97)


def _entry(key: str, value: bytes, *tags: str, fresh: float = 100.0) -> Entry:
    return Entry(value, fresh, fresh + 5.0, measure(key, value, len(tags)), frozenset(tags), fresh - 30.0)


def _store(max_entries: int = 100_000, max_bytes: int = 10**8, hot_share: float = 0.25) -> TieredStore:
    return TieredStore(
        max_entries=max_entries, max_bytes=max_bytes, packing=Packing(zdict=ZDICT), hot_share=hot_share
    )


def _put(store: TieredStore, key: str, value: bytes, *tags: str) -> bool:
    return store.put(key, _entry(key, value, *tags))


def test_a_stored_entry_is_served_from_the_hot_tier_as_it_was_given():
    store = _store()
    entry = _entry("v1:a", _fragment(1), "student:1")
    store.put("v1:a", entry)
    assert store.get("v1:a") is entry
    assert store.entries == 1 and store.hot_entries == 1


def test_a_packed_hit_is_copied_into_the_hot_tier_with_its_bounds():
    # A hot tier that holds about two entries: the third store pushes the first out of it.
    store = _store(max_bytes=2_000_000, hot_share=(2.5 * measure("v1:0", _fragment(0))) / 2_000_000)
    for n in range(3):
        _put(store, f"v1:{n}", _fragment(n))
    assert store.entries == 3 and store.hot_entries == 2
    first = store.get("v1:0")  # from the packed tier
    assert first is not None and first.value == _fragment(0)
    assert (first.fresh_until, first.stale_until, first.stored_at) == (100.0, 105.0, 70.0)
    again = store.get("v1:0")
    assert again is not None and again.value == _fragment(0) and again.fresh_until == 100.0
    assert store.get("v1:0") is again  # now a hot hit: the same object
    assert store.hot_entries == 2 and store.evictions == 0
    _put(store, "v1:0", _fragment(7))  # a new value replaces the packed copy too
    assert store.entries == 3
    for n in (1, 2):
        store.get(f"v1:{n}")  # pushes the new value out of the hot tier, packed
    found = store.get("v1:0")
    assert found is not None and found.value == _fragment(7) and store.entries == 3


def test_an_invalidated_key_or_tag_leaves_both_tiers_even_after_a_copy_without_tags():
    store = _store(max_bytes=2_000_000, hot_share=(1.5 * measure("v1:0", _fragment(0), 1)) / 2_000_000)
    _put(store, "v1:a", _fragment(1), "student:1")
    _put(store, "v1:b", _fragment(2), "student:2")
    assert store.get("v1:a") is not None  # copied back into the hot tier, tags not read
    assert store.delete_tag("student:1") == ["v1:a"]
    assert store.get("v1:a") is None and not store.contains("v1:a")
    store.delete("v1:b")
    assert store.get("v1:b") is None and store.entries == 0 and store.hot_entries == 0


def test_a_key_the_packed_tier_evicts_leaves_the_hot_tier_too():
    # "x" is read often enough to stay in the hot tier, whose hits the packed tier does not see: when
    # the packed tier evicts its copy, the hot copy must go too.
    store = _store(max_bytes=200_000, hot_share=0.5)
    _put(store, "x", _fragment(0))
    filler = iter(range(1, 100_000))
    for _ in range(600):  # the hot tier holds about 250: "x" is pushed out, packed
        _put(store, f"v1:{next(filler)}", _fragment(1))
    assert store.evictions == 0 and store.hot_entries < 500
    assert store.get("x") is not None and store.get("x") is store.get("x")  # now a hot copy of a packed entry
    while store.contains("x"):
        _put(store, f"v1:{next(filler)}", _fragment(2))
        assert store.get("x") is not None or not store.contains("x")
    assert store.get("x") is None and store.evictions > 0


def test_what_the_packed_tier_refuses_is_not_held_in_either_tier():
    store = _store()
    _put(store, "k", b"old")
    assert store.put("k", Entry({"not": "bytes"}, 100.0, 100.0, 500)) is False
    assert store.get("k") is None and store.entries == 0 and store.hot_entries == 0
    assert _put(store, "x" * 256, b"long key") is False and store.get("x" * 256) is None


def test_an_invalidation_between_a_packed_read_and_its_copy_is_not_undone():
    store = _store(max_bytes=2_000_000, hot_share=(1.5 * measure("v1:a", _fragment(0))) / 2_000_000)
    _put(store, "v1:a", _fragment(1))
    _put(store, "v1:b", _fragment(2))  # pushes v1:a out of the hot tier
    read_packed = store._packed_get

    def read_then_invalidate(key: str) -> Entry | None:
        found = read_packed(key)
        store.delete(key)  # another thread's invalidation lands right after the read
        return found

    store._packed_get = read_then_invalidate
    assert store.get("v1:a") is not None  # that read began before the invalidation
    store._packed_get = read_packed
    assert store.get("v1:a") is None and store.hot_entries <= 1


def test_hot_share_must_leave_room_for_both_tiers():
    for share in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="hot_share"):
            _store(hot_share=share)
    with pytest.raises(ValueError, match="needs a packing"):
        InProcessCache(hot_share=0.1)


operations = st.lists(
    st.tuples(
        st.sampled_from(["put", "get", "get", "delete", "delete_tag"]),
        st.integers(0, 12),
        st.sampled_from([1, 1, 1, 40]),  # some larger than the hot tier
    ),
    max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(ops=operations, max_entries=st.integers(1, 8))
def test_a_read_returns_exactly_what_the_store_holds(ops, max_entries):
    store = _store(max_entries=max_entries, max_bytes=120_000, hot_share=0.01)  # a hot tier of 1,200 bytes
    held: dict[str, bytes] = {}
    for op, n, repeat in ops:
        key = f"k{n}"
        if op == "put":
            value = bytes(range(n, n + 10)) * repeat
            if _put(store, key, value, f"t{n % 3}"):
                held[key] = value
        elif op == "get":
            store.get(key)
        elif op == "delete":
            store.delete(key)
        else:
            store.delete_tag(f"t{n % 3}")
        for probe in range(13):
            name = f"k{probe}"
            contained = store.contains(name)
            found = store.get(name)  # may itself push an entry out of both tiers, even this one
            assert found is None or found.value == held[name]
            assert found is not None or not contained
        assert store.entries == sum(store.contains(f"k{probe}") for probe in range(13))
        assert store.hot_entries <= max_entries and store._packed.entries <= max_entries


def test_reads_beside_writers_never_see_another_keys_value():
    store = _store(max_entries=300, max_bytes=200_000, hot_share=0.1)
    stop = threading.Event()
    wrong: list[tuple[str, bytes]] = []

    def write(offset: int) -> None:
        n = offset
        while not stop.is_set():
            key = f"v1:{n % 500}"
            _put(store, key, key.encode() * (1 + n % 7), f"student:{n % 40}")
            if n % 13 == 0:
                store.delete_tag(f"student:{n % 40}")
            n += 2

    def read() -> None:
        for n in range(30_000):
            key = f"v1:{n % 500}"
            found = store.get(key)
            if found is not None and found.value.replace(key.encode(), b""):
                wrong.append((key, found.value))

    writers = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    readers = [threading.Thread(target=read) for _ in range(2)]
    for thread in writers + readers:
        thread.start()
    for thread in readers:
        thread.join()
    stop.set()
    for thread in writers:
        thread.join()
    assert wrong == []
    assert store.hot_entries <= store.entries


def test_the_reported_bytes_agree_with_real_allocations_within_ten_percent():
    gc.collect()
    tracemalloc.start()
    store = _store(hot_share=0.02)  # a 2 MB hot tier: about a third of the entries below are hot
    for n in range(12_000):
        key = f"v1:{n // 12}:{n % 12}"
        _put(store, key, _fragment(n) * 3, f"student:{n // 12}")
    gc.collect()
    real, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert 0 < store.hot_entries < store.entries == 12_000
    assert 0.9 <= store.bytes / real <= 1.1, (store.bytes, real)


class BytesBackend:
    """A backend of `bytes` values that counts its calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.version = 0

    def __call__(self, key: str) -> bytes:
        self.calls.append(key)
        return _fragment(self.version) + key.encode()


def test_an_optimizer_on_the_tiered_layout_keeps_ttl_and_read_your_writes(make_optimizer, clock: FakeClock):
    backend = BytesBackend()
    config = OptimizerConfig(ttl_s=10, jitter=0)
    cache = InProcessCache(config, packing=Packing(zdict=ZDICT), hot_share=0.1)
    opt = make_optimizer(backend, config=config, cache=cache, tags=lambda key: [f"student:{key[0]}"])
    assert opt("1:a") == opt("1:a") == _fragment(0) + b"1:a"
    opt("2:a")
    backend.version = 1
    clock.advance(9.9)
    assert opt("1:a") == _fragment(0) + b"1:a"
    opt.invalidate_tag("student:1")
    assert opt("1:a") == _fragment(1) + b"1:a" and opt("2:a") == _fragment(0) + b"2:a"
    clock.advance(0.2)
    assert opt("2:a") == _fragment(1) + b"2:a"
    assert backend.calls == ["1:a", "2:a", "1:a", "2:a"]
    assert opt.stats()["hits"] == 3 and opt.cache.entries == 2
