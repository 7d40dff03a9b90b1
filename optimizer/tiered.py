"""The tiered in-process store: every entry packed, the recently used ones also as objects in front.

`InProcessCache` uses it when the app gives a `Packing` and a hot share. The
packed tier (`packed.PackedStore`) holds every entry compressed, about 96
bytes a portal fragment, so a large working set fits a small budget; the hot
tier (`local.LocalStore`, a share of the budget) holds the entries stored or
read lately as they are, so a hit on them costs what a hit on the objects
layout costs. A hit in the packed tier decompresses the value and copies the
entry into the hot tier; the least recently used hot entries make room (they
stay packed).

The hot tier only ever holds keys the packed tier holds: a store writes both,
a key the packed tier drops (invalidated, evicted or refused) leaves both, so
the packed tier's count, evictions and tags are the store's own. Writes hold
one lock across both tiers and count themselves; a copy into the hot tier is
made under that lock only if no write came between its read of the packed
tier and the copy, so it never brings back a value invalidated meanwhile.
Reads of the hot tier take no lock.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from optimizer.entry import Entry
from optimizer.local import LocalStore
from optimizer.packed import PackedStore
from optimizer.packing import Packing
from optimizer.sizing import measure

__all__ = ["TieredStore"]


class TieredStore:
    """A packed store of every entry behind a hot LRU of recently used ones; see the module docstring."""

    def __init__(self, *, max_entries: int, max_bytes: int, packing: Packing, hot_share: float) -> None:
        if not 0 < hot_share < 1:
            raise ValueError(f"hot_share must be between 0 and 1, got {hot_share!r}")
        hot_bytes = int(max_bytes * hot_share)
        self._lock = threading.Lock()
        self._writes = 0
        self._hot = LocalStore(max_entries=max_entries, max_bytes=hot_bytes)
        self._packed = PackedStore(max_entries=max_entries, max_bytes=max_bytes - hot_bytes, packing=packing)
        self._hot_get = self._hot.get
        self._packed_get = self._packed.get

    def get(self, key: str) -> Entry | None:
        entry = self._hot_get(key)
        if entry is not None:
            return entry
        writes = self._writes
        entry = self._packed_get(key)
        if entry is not None:
            self._promote(key, entry, writes)
        return entry

    def _promote(self, key: str, entry: Entry, writes: int) -> None:
        """Copy a packed hit into the hot tier unless a write came since `writes` was read."""
        value = entry.value
        sized = Entry(value, entry.fresh_until, entry.stale_until, measure(key, value), stored_at=entry.stored_at)
        with self._lock:
            if writes == self._writes:
                self._hot.put(key, sized)

    def put(self, key: str, entry: Entry) -> bool:
        """Store `entry` in both tiers; return False (and hold no entry for `key`) when it cannot be packed."""
        record = self._packed.pack(key, entry)  # compressed before the lock
        evicted: list[str] = []
        with self._lock:
            self._writes += 1
            stored = record is not None and self._packed.store(key, record, entry, evicted)
            if stored:
                self._hot.put(key, entry)
            else:
                self._packed.delete(key)
                self._hot.delete(key)
            for gone in evicted:
                self._hot.delete(gone)
        return stored

    def put_many(self, entries: Sequence[tuple[str, Entry]]) -> None:
        for key, entry in entries:
            self.put(key, entry)

    def delete(self, key: str) -> None:
        with self._lock:
            self._writes += 1
            self._packed.delete(key)
            self._hot.delete(key)

    def delete_tag(self, tag: str) -> list[str]:
        """Drop every entry tagged `tag`; return their keys."""
        with self._lock:
            self._writes += 1
            keys = self._packed.delete_tag(tag)
            for key in keys:
                self._hot.delete(key)
            return keys

    def clear(self) -> None:
        with self._lock:
            self._writes += 1
            self._packed.clear()
            self._hot.clear()

    def contains(self, key: str) -> bool:
        return self._packed.contains(key)

    @property
    def bytes(self) -> int:
        return self._packed.bytes + self._hot.bytes

    @property
    def entries(self) -> int:
        return self._packed.entries

    @property
    def hot_entries(self) -> int:
        """Entries also held as objects in the hot tier."""
        return self._hot.entries

    @property
    def evictions(self) -> int:
        return self._packed.evictions
