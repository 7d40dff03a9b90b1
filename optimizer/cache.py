"""Cache storage: the `Cache` boundary the optimizer talks to, and the in-process LRU.

`Optimizer` (core.py) is the only caller. It decides what is fresh, what may be
served stale and when a fetch may land; a `Cache` only stores entries, bounds
its memory, and drops keys and tags on invalidation. `RedisCache`
(redis_backend.py) implements the same boundary with a shared tier.

The in-process store (`LocalStore`) is one OrderedDict in LRU order bounded by
entry count and by the sum of the entries' measured sizes (`sizing.measure`),
with a tag index next to it, laid out to hold a large working set of small
entries (see bench/optimizer_memory.py). One lock guards writes; reads take none.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from optimizer.entry import NO_TAGS, Entry
from optimizer.packed import PackedStore
from optimizer.packing import Packing
from optimizer.settings import OptimizerConfig

__all__ = ["Cache", "Entry", "InProcessCache", "LocalStore", "RemoteInvalidation"]


# Called with (key, None) when a key was invalidated elsewhere, (None, tag) for a tag,
# (None, None) when everything must be treated as invalidated (e.g. after a reconnect).
RemoteInvalidation = Callable[[str | None, str | None], None]


class Cache(ABC):
    """What the optimizer needs from a cache. Implementations must be thread-safe.

    The optimizer calls `put` while holding its flight lock (so an invalidation
    cannot slip between its check and the store) and everything else without it;
    `put` must therefore be quick and local. A shared tier writes in `share`,
    fenced by the token `fence` took before the fetch started.
    """

    def attach(self, *, name: str, config: OptimizerConfig, clock: Callable[[], float]) -> None:  # noqa: B027
        """Bind the cache to one optimized function and its clock; called once by `Optimizer.__init__`."""

    @abstractmethod
    def get(self, key: str) -> Entry | None:
        """Return the entry for `key`, expired or not, or None."""

    def reader(self) -> Callable[[str], Entry | None]:
        """Return the function the optimizer's hit path calls for `get` (after `attach`).

        A cache may hand out its store's own lookup, a Python call less per hit.
        """
        return self.get

    def fence(self, key: str, tags: frozenset[str]) -> Any:
        """Return a token taken before a fetch starts; `share` refuses it if `key` was invalidated since."""
        return None

    def share(self, key: str, entry: Entry, fence: Any) -> None:  # noqa: B027
        """Store `entry` in the shared tier unless `key` or its tags were invalidated since `fence`."""

    @abstractmethod
    def put(self, key: str, entry: Entry) -> None:
        """Store `entry` in process."""

    def put_many(self, entries: Sequence[tuple[str, Entry]]) -> None:
        """`put` each (key, entry); a cache may store them under one acquisition of its lock."""
        for key, entry in entries:
            self.put(key, entry)

    @abstractmethod
    def invalidate(self, key: str) -> None:
        """Drop `key` everywhere this cache reaches before returning; never raises."""

    @abstractmethod
    def invalidate_tag(self, tag: str) -> None:
        """Drop every entry tagged `tag` everywhere this cache reaches before returning; never raises."""

    @abstractmethod
    def clear(self) -> None:
        """Drop every entry held in process."""

    @abstractmethod
    def contains(self, key: str) -> bool:
        """Whether `key` is held in process (for tests and diagnostics)."""

    def on_remote_invalidation(self, callback: RemoteInvalidation) -> None:  # noqa: B027
        """Register who to tell when another instance invalidated something (shared caches only)."""

    @property
    @abstractmethod
    def bytes(self) -> int:
        """Bytes held in process."""

    @property
    @abstractmethod
    def entries(self) -> int:
        """Entries held in process."""

    @property
    def evictions(self) -> int:
        """Entries evicted by the memory bounds so far."""
        return 0

    def close(self) -> None:  # noqa: B027
        """Release connections and threads."""


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

    def get(self, key: str) -> Entry | None:
        # No lock: one OrderedDict lookup is atomic under the GIL. Recency is marked, not
        # moved, and only once the store is half full (nothing is evicted soon before that).
        entry = self._lru.get(key)
        if entry is not None and self._tracking:
            self._used[key] = None
        return entry

    def put(self, key: str, entry: Entry) -> bool:
        """Store `entry`; return False when it is larger than the whole byte budget."""
        with self._lock:
            return self._put(key, entry)

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
    def entries(self) -> int:
        return len(self._lru)

    # under the lock

    def _put(self, key: str, entry: Entry) -> bool:
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
            evicted, old = self._lru.popitem(last=False)
            self._forget(evicted, old)
            self.evictions += 1
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


class InProcessCache(Cache):
    """The default cache: entries live in this process only, bounded by count and bytes.

    Built by `Optimizer` from its config when no cache is given; bounds given here win.

    Two layouts, the app's choice: by default entries are Python objects in one
    OrderedDict (`LocalStore`): a hit returns the stored value itself, the fastest
    hit, about 540 bytes an entry for a 230-byte value. With `packing`, values must
    be `bytes` and are held compressed in arenas (`packed.PackedStore`): about 96
    bytes an entry for the same value, at about 1.7 us more per hit (decompression
    and a new `Entry`; bench/optimizer_memory.py, bench/optimizer_gate.py).
    A value that is not `bytes` is then served but not cached.
    """

    def __init__(
        self,
        config: OptimizerConfig | None = None,
        *,
        max_entries: int | None = None,
        max_bytes: int | None = None,
        packing: Packing | None = None,
    ) -> None:
        self._explicit = config is not None or max_entries is not None or max_bytes is not None
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._packing = packing
        self._store = self._build(config or OptimizerConfig())

    def attach(self, *, name: str, config: OptimizerConfig, clock: Callable[[], float]) -> None:
        if not self._explicit:
            self._store = self._build(config)

    def _build(self, config: OptimizerConfig) -> LocalStore | PackedStore:
        max_entries = self._max_entries or config.max_entries
        max_bytes = self._max_bytes or config.max_bytes
        if self._packing is not None:
            return PackedStore(max_entries=max_entries, max_bytes=max_bytes, packing=self._packing)
        return LocalStore(max_entries=max_entries, max_bytes=max_bytes)

    def get(self, key: str) -> Entry | None:
        return self._store.get(key)

    def reader(self) -> Callable[[str], Entry | None]:
        return self._store.get

    def put(self, key: str, entry: Entry) -> None:
        self._store.put(key, entry)

    def put_many(self, entries: Sequence[tuple[str, Entry]]) -> None:
        self._store.put_many(entries)

    def invalidate(self, key: str) -> None:
        self._store.delete(key)

    def invalidate_tag(self, tag: str) -> None:
        self._store.delete_tag(tag)

    def clear(self) -> None:
        self._store.clear()

    def contains(self, key: str) -> bool:
        return self._store.contains(key)

    @property
    def evictions(self) -> int:
        return self._store.evictions

    @property
    def bytes(self) -> int:
        return self._store.bytes

    @property
    def entries(self) -> int:
        return self._store.entries
