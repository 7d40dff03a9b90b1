"""The tiered in-process store: the entries used lately as objects, the rest packed behind them.

`InProcessCache` uses it when the app gives a `Packing` and a hot share. The
hot tier (`local.LocalStore`, that share of the byte budget) holds the
entries stored or read lately as they are, so a hit on them costs what a hit
on the objects layout costs; the packed tier (`packed.PackedStore`, the rest
of the budget) holds the others compressed, about 96 bytes a portal
fragment, so a large working set fits a small budget.

A store goes to the hot tier only. An entry is compressed when the hot tier
evicts it to make room (it moves to the packed tier), so a working set that
fits the hot tier is never compressed, and a larger one is compressed once
an entry. A hit in the packed tier decompresses the value and copies the
entry into the hot tier; the packed copy stays, so evicting it from the hot
tier again costs nothing. A key is thus in the hot tier unpacked (stored
since its last move), or packed with or without a hot copy. An invalidation
drops the key from both tiers, and a key the packed tier evicts leaves the
hot tier too.

Writes hold one lock across both tiers and count themselves; a copy into the
hot tier is made under that lock only if no write came between its read of
the packed tier and the copy, so it never brings back a value invalidated
meanwhile. Reads take no lock; an entry read while it moves between the tiers
may be missed, which costs a backend call, never a stale value.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence

from optimizer.entry import Entry
from optimizer.local import LocalStore
from optimizer.packed import PackedStore
from optimizer.packing import Packing
from optimizer.sizing import measure

__all__ = ["TieredStore"]


class TieredStore:
    """Recently used entries as objects in front of the others packed; see the module docstring."""

    def __init__(self, *, max_entries: int, max_bytes: int, packing: Packing, hot_share: float) -> None:
        if not 0 < hot_share < 1:
            raise ValueError(f"hot_share must be between 0 and 1, got {hot_share!r}")
        hot_bytes = int(max_bytes * hot_share)
        self._lock = threading.Lock()
        self._writes = 0
        self._hot = LocalStore(max_entries=max_entries, max_bytes=hot_bytes)
        self._packed = PackedStore(max_entries=max_entries, max_bytes=max_bytes - hot_bytes, packing=packing)
        self._unpacked: set[str] = set()  # hot keys with no packed copy
        self._refused = 0  # entries the packed tier could not take when they left the hot tier
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
        sized = Entry(
            value, entry.fresh_until, entry.stale_until, measure(key, value), stored_at=entry.stored_at
        )
        with self._lock:
            if writes == self._writes:
                self._put_hot(key, sized, packed=True)

    def put(self, key: str, entry: Entry) -> bool:
        """Store `entry`; return False (and hold no entry for `key`) when the packed tier could never take it."""
        if not self._packed.can_hold(key, entry.value):
            self.delete(key)
            return False
        with self._lock:
            self._store(key, entry)
        return True

    def put_many(self, entries: Sequence[tuple[str, Entry]]) -> None:
        """Store each (key, entry) under one acquisition of the lock; what the packed tier could never take is dropped."""
        with self._lock:
            for key, entry in entries:
                if self._packed.can_hold(key, entry.value):
                    self._store(key, entry)
                else:
                    self._drop(key)

    def delete(self, key: str) -> None:
        with self._lock:
            self._drop(key)

    def delete_tag(self, tag: str) -> list[str]:
        """Drop every entry tagged `tag`; return their keys."""
        with self._lock:
            self._writes += 1
            packed = self._packed.delete_tag(tag)  # their hot copies were made without tags
            for key in packed:
                self._hot.delete(key)
            unpacked = self._hot.delete_tag(tag)
            self._unpacked.difference_update(unpacked)
            return packed + unpacked

    def clear(self) -> None:
        with self._lock:
            self._writes += 1
            self._packed.clear()
            self._hot.clear()
            self._unpacked.clear()

    def contains(self, key: str) -> bool:
        with self._lock:
            return key in self._unpacked or self._packed.contains(key)

    @property
    def bytes(self) -> int:
        return self._packed.bytes + self._hot.bytes + sys.getsizeof(self._unpacked)

    @property
    def entries(self) -> int:
        return self._packed.entries + len(self._unpacked)

    @property
    def hot_entries(self) -> int:
        """Entries held as objects in the hot tier, packed or not."""
        return self._hot.entries

    @property
    def evictions(self) -> int:
        return self._packed.evictions + self._refused

    # under the lock

    def _store(self, key: str, entry: Entry) -> None:
        self._writes += 1
        if self._packed.entries and key not in self._unpacked:
            self._packed.delete(key)  # an older value's packed copy
        self._put_hot(key, entry, packed=False)

    def _drop(self, key: str) -> None:
        self._writes += 1
        self._packed.delete(key)
        self._hot.delete(key)
        self._unpacked.discard(key)

    def _put_hot(self, key: str, entry: Entry, *, packed: bool) -> None:
        """Hold `entry` in the hot tier (packed: it has a packed copy) and pack what that pushes out."""
        pushed_out: list[tuple[str, Entry]] = []
        if self._hot.put(key, entry, pushed_out):
            if packed:
                self._unpacked.discard(key)
            else:
                self._unpacked.add(key)
        elif not packed:  # larger than the hot tier: straight to the packed one
            self._unpacked.add(key)
            pushed_out.append((key, entry))
        self._pack(pushed_out)

    def _pack(self, pushed_out: list[tuple[str, Entry]]) -> None:
        """Move the unpacked entries the hot tier pushed out into the packed tier."""
        evicted: list[str] = []
        for key, entry in pushed_out:
            if key not in self._unpacked:
                continue  # a copy of a packed entry: that stays
            self._unpacked.discard(key)
            record = self._packed.pack(key, entry)
            if record is None or not self._packed.store(key, record, entry, evicted):
                self._refused += 1
        for key in evicted:  # only keys with a packed copy, so never an unpacked one
            self._hot.delete(key)
