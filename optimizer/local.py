"""`LocalStore`: the in-process LRU of entries, bounded by count and bytes, with a tag index.

One OrderedDict in LRU order bounded by entry count and by the sum of the
entries' measured sizes (`sizing.measure`), with a tag index next to it, laid
out to hold a large working set of small entries (see bench/optimizer_memory.py).
One lock guards writes; reads take none. It is the in-process tier of
`cache.InProcessCache`, of `redis_backend.RedisCache`, and the hot tier of
`tiered.TieredStore`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

from optimizer.entry import NO_TAGS, Entry

__all__ = ["LocalStore"]


# A tag's keys are held in a list while few (a student's dozen keys: 15 bytes a key instead of 60 in a
# set), in a set past this many, so that dropping one key of a large tag stays cheap.
_SMALL_TAG = 32


class LocalStore:
    """A byte- and count-bounded LRU of entries with a tag index; the in-process tier of both caches.

    Reads take no lock: `get` is one OrderedDict lookup and, once the store is
    half full, marks the key as used; the marks reach the LRU's order only when
    a store is about to evict, so recency is exact up to the last eviction and
    approximate since (used keys move ahead of unused ones).

    Built for a large working set of small entries: one OrderedDict holds the
    entries in LRU order (cachetools' LRUCache keeps three mappings a key), the
    byte total is kept here, and entries that carry the same single tag share
    one frozenset of it; an entry whose stale bound equals its fresh bound
    shares that float. `sizing.ENTRY_OVERHEAD` is what this layout costs an entry.
    """

    def __init__(self, *, max_entries: int, max_bytes: int) -> None:
        self._lock = threading.Lock()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._lru: OrderedDict[str, Entry] = OrderedDict()
        self._bytes = 0
        self._by_tag: dict[str, list[str] | set[str]] = {}
        self._single_tags: dict[str, frozenset[str]] = {}
        self._used: dict[str, None] = {}
        self._tracking = False
        self.evictions = 0
        self.get = self.reader()

    def reader(
        self, on_miss: Callable[[str], Entry | None] = lambda _key: None
    ) -> Callable[[str], Entry | None]:
        """A lock-free `get` that asks `on_miss` for the keys this store does not hold.

        One OrderedDict lookup is atomic under the GIL. Recency is marked, not moved, and only
        once the store is half full (nothing is evicted soon before that). A store behind this
        one (the tiered store's packed tier) is reached through `on_miss`, so a hit here is one
        Python call, not a call of its own wrapping this store's.
        """
        lru_get = self._lru.get  # cleared in place, never replaced

        def get(key: str) -> Entry | None:
            entry = lru_get(key)
            if entry is None:
                return on_miss(key)
            if self._tracking:
                self._used[key] = None
            return entry

        return get

    def settle(self) -> None:
        """Nothing is left for later here (see `tiered.TieredStore.settle`)."""

    def put(self, key: str, entry: Entry, evicted: list[tuple[str, Entry]] | None = None) -> bool:
        """Store `entry`; return False when it is larger than the whole byte budget.

        The entries it evicts to make room are added to `evicted` when given.
        """
        with self._lock:
            return self._put(key, entry, evicted)

    def put_many(self, entries: Sequence[tuple[str, Entry]]) -> None:
        """Store each (key, entry) under one acquisition of the lock; entries over the budget are skipped."""
        with self._lock:
            for key, entry in entries:
                self._put(key, entry)

    def delete(self, key: str) -> None:
        with self._lock:
            self._drop(key)

    def delete_tag(self, tag: str) -> list[str]:
        """Drop every entry tagged `tag`; return their keys."""
        with self._lock:
            keys = list(self._by_tag.pop(tag, ()))
            self._single_tags.pop(tag, None)
            for key in keys:
                self._drop(key)
            return keys

    def clear(self) -> None:
        with self._lock:
            self._lru.clear()
            self._bytes = 0
            self._by_tag.clear()
            self._single_tags.clear()
            self._used = {}

    def contains(self, key: str) -> bool:
        with self._lock:
            return key in self._lru

    @property
    def bytes(self) -> int:
        return self._bytes

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @max_bytes.setter
    def max_bytes(self, limit: int) -> None:
        """Move the byte bound; entries over a lowered bound are evicted by the next store."""
        self._max_bytes = limit

    @property
    def entries(self) -> int:
        return len(self._lru)

    # under the lock

    def _put(self, key: str, entry: Entry, evicted: list[tuple[str, Entry]] | None = None) -> bool:
        self._drop(key)
        if entry.size > self._max_bytes:
            return False
        entry = self._compact(entry)
        self._apply_use(entry.size)
        self._lru[key] = entry
        self._bytes += entry.size
        for tag in entry.tags:
            self._index(tag, key)
        while len(self._lru) > self._max_entries or self._bytes > self._max_bytes:
            gone, old = self._lru.popitem(last=False)
            self._forget(gone, old)
            self.evictions += 1
            if evicted is not None:
                evicted.append((gone, old))
        return True

    def _apply_use(self, incoming: int) -> None:
        """Before a store that will evict, move the keys read since the last one to the recent end."""
        lru = self._lru
        self._tracking = 2 * len(lru) >= self._max_entries or 2 * (self._bytes + incoming) > self._max_bytes
        full = len(lru) >= self._max_entries or self._bytes + incoming > self._max_bytes
        if not full and len(self._used) <= len(lru):
            return
        used, self._used = self._used, {}
        if full:
            for key in list(used):  # list() of a dict is one C call: readers still adding cannot break it
                if key in lru:
                    lru.move_to_end(key)

    def _compact(self, entry: Entry) -> Entry:
        tags = entry.tags
        if not tags:
            tags = NO_TAGS
        elif len(tags) == 1:
            (tag,) = tags
            tags = self._single_tags.setdefault(tag, tags)
        stale_until = entry.fresh_until if entry.stale_until == entry.fresh_until else entry.stale_until
        if tags is entry.tags and stale_until is entry.stale_until:
            return entry
        # Built directly: dataclasses.replace looks the fields up on every call, 3.5x the cost.
        return Entry(entry.value, entry.fresh_until, stale_until, entry.size, tags, entry.stored_at)

    def _drop(self, key: str) -> None:
        entry = self._lru.pop(key, None)
        if entry is not None:
            self._forget(key, entry)

    def _forget(self, key: str, entry: Entry) -> None:
        self._bytes -= entry.size
        for tag in entry.tags:
            keys = self._by_tag.get(tag)
            if keys is None:
                continue
            if isinstance(keys, list):
                if key in keys:
                    keys.remove(key)
            else:
                keys.discard(key)
            if not keys:
                del self._by_tag[tag]
                self._single_tags.pop(tag, None)

    def _index(self, tag: str, key: str) -> None:
        keys = self._by_tag.get(tag)
        if keys is None:
            self._by_tag[tag] = [key]
        elif isinstance(keys, list):
            keys.append(key)  # never there already: put dropped the key first
            if len(keys) > _SMALL_TAG:
                self._by_tag[tag] = set(keys)
        else:
            keys.add(key)
