"""The tiered in-process store: the entries stored lately as objects, the older ones packed.

`InProcessCache` uses it when the app gives a `Packing` and a hot share. The
hot tier (`local.LocalStore`) holds the entries stored lately as they are, so
a hit on them costs what a hit on the objects layout costs; the packed tier
(`packed.PackedStore`, the budget less the hot share) holds the others
compressed, about 96 bytes a portal fragment, so a large working set fits a
small budget.

The hot tier's bound moves: it may fill the budget up to `pack_above` of it,
less what the packed tier and the entries waiting to be packed hold, and it
never has less than `hot_share` of it. So a working set that fits in
`pack_above` of the budget as objects is never compressed (compressing costs
about 25 us an entry, a packed hit about 4 us more than a hot one), and a
larger one is packed oldest first until the objects left fit beside it. With
`pack_above` equal to `hot_share` (the default) the hot tier is fixed.

A store goes to the hot tier. An entry is compressed when the hot tier
evicts it to make room (least recently used first): it moves to the packed
tier, where it stays until it is stored again, invalidated or evicted. So a
working set that fits the hot tier is never compressed, and a larger one is
compressed once an entry. A hit in the packed tier decompresses the value
(about 4 us more than a hot hit) and leaves the entry where it is: copying
it back would evict another entry the next reads may need, and a working set
that cycles through a hot tier too small for it (a mass submission's
reloads) would be compressed and decompressed on every read.

The optimizer stores under its flight lock, so a store does not compress:
what it pushes out of the hot tier waits, still served, until `settle` (which
the optimizer calls once the flight lock is released) compresses it outside
every lock and moves it to the packed tier unless it was stored again or
invalidated meanwhile. A key is in one place at a time; an invalidation drops
it from all. Writes hold one lock; reads take none.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from optimizer.entry import Entry
from optimizer.local import LocalStore
from optimizer.packed import PackedStore
from optimizer.packing import Packing

__all__ = ["TieredStore"]


class TieredStore:
    """The entries stored lately as objects in front of the older ones packed; see the module docstring."""

    def __init__(
        self,
        *,
        max_entries: int,
        max_bytes: int,
        packing: Packing,
        hot_share: float,
        pack_above: float | None = None,
    ) -> None:
        pack_above = hot_share if pack_above is None else pack_above
        if not 0 < hot_share < 1:
            raise ValueError(f"hot_share must be between 0 and 1, got {hot_share!r}")
        if not hot_share <= pack_above <= 1:
            raise ValueError(f"pack_above must be between hot_share ({hot_share}) and 1, got {pack_above!r}")
        hot_bytes = int(max_bytes * hot_share)
        self._hot_floor = hot_bytes
        self._objects_ceiling = int(max_bytes * pack_above)
        self._lock = threading.Lock()
        self._hot = LocalStore(max_entries=max_entries, max_bytes=hot_bytes)
        self._packed = PackedStore(max_entries=max_entries, max_bytes=max_bytes - hot_bytes, packing=packing)
        # Pushed out of the hot tier, not yet packed: still served from here until `settle` packs them.
        self._leaving: dict[str, Entry] = {}
        self._leaving_bytes = 0
        self._to_pack: list[
            str
        ] = []  # keys `settle` has not taken yet: two settles never pack one entry twice
        self._refused = 0  # entries the packed tier could not take when they left the hot tier
        # The packed tier's bytes as of its last growth: summing its buffers costs about 6 us, too much
        # for every store. It grows only in `settle`; a deletion leaves its buffers allocated.
        self._packed_bytes = self._packed.bytes
        self._leaving_get = self._leaving.get
        self._packed_get = self._packed.get
        # A hit in the hot tier is one Python call; the other tiers are asked only on a miss there.
        self.get = self._hot.reader(self._cold_get)

    def reader(self) -> Callable[[str], Entry | None]:
        return self.get

    def _cold_get(self, key: str) -> Entry | None:
        entry = self._leaving_get(key)
        if entry is None:
            return self._packed_get(key)
        return entry

    def put(self, key: str, entry: Entry) -> bool:
        """Store `entry` and pack what that pushes out; return False when the packed tier could never take it."""
        if not self._packed.can_hold(key, entry.value):
            self.delete(key)
            return False
        with self._lock:
            self._store(key, entry)
        self.settle()
        return True

    def put_many(self, entries: Sequence[tuple[str, Entry]]) -> None:
        """Store each (key, entry) under one acquisition of the lock; what it pushes out waits for `settle`."""
        with self._lock:
            for key, entry in entries:
                if self._packed.can_hold(key, entry.value):
                    self._store(key, entry)
                else:
                    self._drop(key)

    def settle(self) -> None:
        """Pack what the hot tier pushed out: compressed outside the lock, stored unless replaced meanwhile."""
        with self._lock:
            keys, self._to_pack = self._to_pack, []
            batch = [(key, entry) for key in keys if (entry := self._leaving.get(key)) is not None]
        if not batch:
            return
        packed = [(key, entry, self._packed.pack(key, entry)) for key, entry in batch]
        with self._lock:
            for key, entry, record in packed:
                if self._leaving.get(key) is not entry:
                    continue  # stored again or invalidated since it was pushed out
                if record is None or not self._packed.store(key, record, entry):
                    self._refused += 1
                self._forget_leaving(key)
            self._packed_bytes = self._packed.bytes

    def delete(self, key: str) -> None:
        with self._lock:
            self._drop(key)

    def delete_tag(self, tag: str) -> list[str]:
        """Drop every entry tagged `tag`; return their keys."""
        with self._lock:
            leaving = [key for key, entry in self._leaving.items() if tag in entry.tags]
            for key in leaving:
                self._forget_leaving(key)
            return self._hot.delete_tag(tag) + leaving + self._packed.delete_tag(tag)

    def clear(self) -> None:
        with self._lock:
            self._hot.clear()
            self._leaving.clear()
            self._leaving_bytes = 0
            self._to_pack = []
            self._packed.clear()
            self._packed_bytes = self._packed.bytes

    def contains(self, key: str) -> bool:
        with self._lock:
            return self._hot.contains(key) or key in self._leaving or self._packed.contains(key)

    @property
    def bytes(self) -> int:
        return self._hot.bytes + self._leaving_bytes + self._packed.bytes

    @property
    def entries(self) -> int:
        return self._hot.entries + len(self._leaving) + self._packed.entries

    @property
    def hot_entries(self) -> int:
        """Entries held as objects in the hot tier."""
        return self._hot.entries

    @property
    def evictions(self) -> int:
        return self._packed.evictions + self._refused

    @property
    def waiting(self) -> int:
        """Entries pushed out of the hot tier that `settle` has not packed yet."""
        return len(self._leaving)

    # under the lock

    def _store(self, key: str, entry: Entry) -> None:
        if self._packed.entries and not self._hot.contains(key):
            # An older value, packed: never served again, even if the packed tier refuses this one.
            self._packed.delete(key)
        self._forget_leaving(key)
        pushed_out: list[tuple[str, Entry]] = []
        self._hot.max_bytes = max(
            self._hot_floor, self._objects_ceiling - self._packed_bytes - self._leaving_bytes
        )
        if not self._hot.put(key, entry, pushed_out):  # larger than the hot tier: straight to the packed one
            pushed_out.append((key, entry))
        for old_key, old_entry in pushed_out:
            self._leaving[old_key] = old_entry
            self._leaving_bytes += old_entry.size
            self._to_pack.append(old_key)

    def _drop(self, key: str) -> None:
        self._hot.delete(key)
        self._forget_leaving(key)
        self._packed.delete(key)

    def _forget_leaving(self, key: str) -> None:
        entry = self._leaving.pop(key, None)
        if entry is not None:
            self._leaving_bytes -= entry.size
