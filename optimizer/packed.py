"""The packed in-process store: a large working set of small `bytes` values with no Python object per entry.

`InProcessCache` uses it instead of `local.LocalStore` when the app gives a
`Packing`. Same contract as `LocalStore` (bounded by count and bytes, a tag
index, lock-free reads); the difference is the layout, about 96 bytes an
entry for the portal's fragments instead of about 540 (bench/optimizer_memory.py):

- every entry is one record in an arena of `bytearray` chunks (64 KiB, less
  for a budget under 2 MiB): a length byte, the key (UTF-8, at most 255
  bytes), the value compressed by `packing.Codec` (a record larger than a
  chunk gets a chunk of its own);
- its metadata lives in `array`s indexed by a slot number: where the record
  starts, the value's length, `fresh_until` (a double), `stored_at` and
  `stale_until` as float32 distances from it (rounded so that an entry never
  lives longer than stored), its tag and a CLOCK bit;
- the key index is an open-addressing hash table (an `array` of slot
  numbers, linear probing, at most half full) whose probes compare the
  arena's bytes, so no key `str` is kept;
- a tag keeps an `array` of its slots; an entry with several tags keeps a tuple.

An entry read back carries no tags and a size of 0 (the optimizer reads
neither); a value that is not `bytes`, or a key over 255 bytes, is refused.

Eviction is CLOCK (second chance): a read sets the slot's bit, the hand
clears set bits and evicts the first slot it finds clear, an approximation of
LRU. Removed records leave garbage in the arena; the arena is rebuilt when
garbage passes a quarter of it. Fixed chunks, not one growing `bytearray`, so
that the arena holds no growth slack (a growing one keeps up to an eighth).

Reads take no lock: every write bumps `_version` before and after it changes
anything (odd while writing). A read that saw the version change, or saw it
odd, or tripped on a half-made change, is redone under the lock.
"""

from __future__ import annotations

import struct
import sys
import threading
import zlib
from array import array
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from optimizer.entry import NO_TAGS, Entry
from optimizer.packing import Codec, Packing

_LIVE = 1 << 31  # in `_lengths`: the slot holds an entry
_MULTI = -2  # in `_tag`: the slot's tags are in `_multi`
_NONE = -1
_MAX_KEY = 255
_OFFSET_BITS = 16
_OFFSET_MASK = (1 << _OFFSET_BITS) - 1
_CHUNK = 1 << _OFFSET_BITS
_MAX_CHUNKS = 1 << (32 - _OFFSET_BITS)
_MAX_VALUE = (1 << 31) - 1
_LENGTH_BYTE = [bytes((n,)) for n in range(_MAX_KEY + 1)]

# Bytes the arrays spend on one slot: start 4, length 4, fresh 8, stored 4, stale 4, tag 4, bit 1.
SLOT_BYTES = 29
# A tag's own cost: its name, its dict slot and id, its slot array's header.
_TAG_BYTES = 200
_SMALL_TAG = 64

_FLOAT32 = struct.Struct("f")
_BITS = struct.Struct("i")
_FLOAT32_MAX = 3.4028234663852886e38
_new_entry = object.__new__
_decompressobj = zlib.decompressobj


def _setter(field: str) -> Callable[[Entry, Any], None]:
    """The slot's own setter: builds an `Entry` without the frozen dataclass's checked `__init__`."""
    setter: Callable[[Entry, Any], None] = getattr(Entry, field).__set__
    return setter


_set_value, _set_fresh, _set_stale, _set_stored, _set_size, _set_tags = map(
    _setter, ("value", "fresh_until", "stale_until", "stored_at", "size", "tags")
)


class Record(NamedTuple):
    """An entry compressed for the arena: length byte, key and packed value, and the packed value's length."""

    data: bytes
    value_length: int


class PackedStore:
    """A byte- and count-bounded store of `bytes` values in arenas and arrays; see the module docstring."""

    def __init__(self, *, max_entries: int, max_bytes: int, packing: Packing) -> None:
        self._lock = threading.Lock()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._codec = Codec(packing)
        self._unpack = self._codec.unpack
        self._zdict = self._codec.zdict
        self._wbits = self._codec.wbits
        self.evictions = 0
        self._version = 0
        self._reset()

    def _reset(self) -> None:
        # Chunks of a 32nd of the budget, 1-64 KiB: a small budget is not spent on one empty chunk.
        self._arena = _Arena(min(max(self._max_bytes // 32, 1024), _CHUNK))
        self._chunks = self._arena.chunks
        self._garbage = 0
        self._starts = array("I")
        self._lengths = array("I")
        self._fresh = array("d")
        self._stored = array("f")
        self._stale = array("f")
        self._tag = array("i")
        self._used = bytearray()
        self._free = array("I")
        self._table = array("i", [0]) * 8
        self._count = 0
        self._hand = 0
        self._tag_ids: dict[str, int] = {}
        self._tag_names: list[str | None] = []
        self._tag_slots: list[array[int] | set[int] | None] = []
        self._free_tags: list[int] = []
        self._members = 0
        self._multi: dict[int, tuple[int, ...]] = {}

    # reads

    def get(self, key: str) -> Entry | None:
        # The hit path: `_find`, `_read`, `_entry` and the codec inlined (a call is about 80 ns of
        # about 1.7 us), checked against `_version` at the end.
        version = self._version
        found = None
        try:
            probe = _LENGTH_BYTE[len(encoded := key.encode())] + encoded
            table, starts, chunks = self._table, self._starts, self._chunks
            mask = len(table) - 1
            bucket = hash(key) & mask
            while (slot := table[bucket] - 1) >= 0:
                start = starts[slot]
                chunk = chunks[start >> _OFFSET_BITS]
                start &= _OFFSET_MASK
                if chunk.startswith(probe, start):
                    self._used[slot] = 1
                    start += len(probe)
                    packed = chunk[start : start + (self._lengths[slot] & ~_LIVE)]
                    zdict = self._zdict
                    value = (
                        _decompressobj(self._wbits, zdict=zdict).decompress(packed)
                        if zdict
                        else self._unpack(packed)
                    )
                    fresh = self._fresh[slot]
                    found = _new_entry(Entry)
                    _set_value(found, value)
                    _set_fresh(found, fresh)
                    _set_stale(found, fresh + self._stale[slot])
                    _set_stored(found, fresh - self._stored[slot])
                    _set_size(found, 0)
                    _set_tags(found, NO_TAGS)
                    break
                bucket = (bucket + 1) & mask
        except (IndexError, ValueError, zlib.error):  # a write moved the arrays under this read
            version = -1
        if version != self._version or version & 1:
            with self._lock:
                return self._read(key)
        return found

    def _read(self, key: str) -> Entry | None:
        slot = self._find(key)
        if slot < 0:
            return None
        self._used[slot] = 1
        chunk, start = self._record(slot)
        start += 1 + chunk[start]
        return self._entry(self._unpack(chunk[start : start + (self._lengths[slot] & ~_LIVE)]), slot)

    def _record(self, slot: int) -> tuple[bytearray, int]:
        """The chunk holding the slot's record and where in it the record starts."""
        start = self._starts[slot]
        return self._chunks[start >> _OFFSET_BITS], start & _OFFSET_MASK

    def _entry(self, value: bytes, slot: int) -> Entry:
        fresh = self._fresh[slot]
        entry = _new_entry(Entry)
        _set_value(entry, value)
        _set_fresh(entry, fresh)
        _set_stale(entry, fresh + self._stale[slot])
        _set_stored(entry, fresh - self._stored[slot])
        _set_size(entry, 0)
        _set_tags(entry, NO_TAGS)
        return entry

    def _find(self, key: str) -> int:
        """The slot holding `key`, or -1."""
        encoded = key.encode()
        if len(encoded) > _MAX_KEY:
            return -1
        probe = _LENGTH_BYTE[len(encoded)] + encoded
        table, starts, chunks = self._table, self._starts, self._chunks
        mask = len(table) - 1
        bucket = hash(key) & mask
        while True:
            slot = table[bucket] - 1
            if slot < 0:
                return -1
            start = starts[slot]
            if chunks[start >> _OFFSET_BITS].startswith(probe, start & _OFFSET_MASK):
                return slot
            bucket = (bucket + 1) & mask

    def contains(self, key: str) -> bool:
        with self._lock:
            return self._find(key) >= 0

    @property
    def entries(self) -> int:
        return self._count

    # writes

    def put(self, key: str, entry: Entry) -> bool:
        """Store `entry`; return False when it cannot be held (not bytes, key too long, over the budget)."""
        record = self.pack(key, entry)
        if record is None:
            self.delete(key)
            return False
        return self.store(key, record, entry)

    def can_hold(self, key: str, value: object) -> bool:
        """Whether `value` under `key` is of a kind the store takes: `bytes`, a key of at most 255 bytes."""
        return isinstance(value, bytes) and (len(key) <= _MAX_KEY // 4 or len(key.encode()) <= _MAX_KEY)

    def pack(self, key: str, entry: Entry) -> Record | None:
        """Compress `entry` into the record `store` keeps; None when it cannot be held. Takes no lock."""
        value = entry.value
        if not self.can_hold(key, value):
            return None
        encoded = key.encode()
        packed = self._codec.pack(value)
        record = _LENGTH_BYTE[len(encoded)] + encoded + packed
        if len(record) + SLOT_BYTES > self._max_bytes or len(packed) > _MAX_VALUE:
            return None
        return Record(record, len(packed))

    def reader(self) -> Callable[[str], Entry | None]:
        return self.get

    def settle(self) -> None:
        """Nothing is left for later here (see `tiered.TieredStore.settle`)."""

    def store(self, key: str, record: Record, entry: Entry) -> bool:
        """Store the record `pack` made of `entry`; return False when the arena has no room left."""
        with self._lock:
            if not self._arena.has_room():
                self._compact()
            self._version += 1
            try:
                self._remove(key)
                if not self._arena.has_room():
                    return False
                self._make_room(len(record.data))
                self._insert(key, record.data, record.value_length, entry)
            finally:
                self._version += 1
            if self._garbage > self._arena.chunk_size and 4 * self._garbage > self._arena.written:
                self._compact()
        return True

    def put_many(self, entries: Sequence[tuple[str, Entry]]) -> None:
        """Store each (key, entry): each is compressed outside the lock, so each takes it on its own."""
        for key, entry in entries:
            self.put(key, entry)

    def delete(self, key: str) -> None:
        with self._lock:
            self._version += 1
            try:
                self._remove(key)
            finally:
                self._version += 1

    def delete_tag(self, tag: str) -> list[str]:
        """Drop every entry tagged `tag`; return their keys."""
        with self._lock:
            tag_id = self._tag_ids.get(tag)
            if tag_id is None:
                return []
            slots = list(self._tag_slots[tag_id] or ())
            keys = [self._key_at(slot) for slot in slots]
            self._version += 1
            try:
                for slot in slots:
                    self._drop(slot)
            finally:
                self._version += 1
            return keys

    def clear(self) -> None:
        with self._lock:
            self._version += 1
            self._reset()
            self._version += 1

    # under the lock

    def _remove(self, key: str) -> None:
        slot = self._find(key)
        if slot >= 0:
            self._drop(slot)

    def _make_room(self, incoming: int) -> None:
        while self._count and (
            self._count >= self._max_entries or self._held() + incoming + SLOT_BYTES > self._max_bytes
        ):
            self._drop(self._victim())
            self.evictions += 1

    def _held(self) -> int:
        """The budget's measure: live records, the slots' arrays, the hash table, the tag index and the codec."""
        live = self._arena.written - self._garbage
        fixed = 4 * len(self._table) + self._codec.bytes_held
        return live + SLOT_BYTES * self._count + fixed + self._tag_bytes()

    def _victim(self) -> int:
        lengths, used = self._lengths, self._used
        hand = self._hand
        while True:
            if hand >= len(lengths):
                hand = 0
            if lengths[hand] & _LIVE:
                if not used[hand]:
                    break
                used[hand] = 0
            hand += 1
        self._hand = hand + 1
        return hand

    def _insert(self, key: str, record: bytes, packed_length: int, entry: Entry) -> None:
        slot = self._free.pop() if self._free else self._grow_slots()
        fresh = entry.fresh_until
        self._starts[slot] = self._arena.append(record)
        self._lengths[slot] = packed_length | _LIVE
        self._fresh[slot] = fresh
        self._stored[slot] = _at_least(fresh - entry.stored_at)
        self._stale[slot] = _at_most(entry.stale_until - fresh)
        self._used[slot] = 0
        self._tag[slot] = self._tag_slot(slot, entry.tags)
        self._count += 1
        if 2 * (self._count + 1) > len(self._table):
            self._rehash(2 * len(self._table))
        else:
            self._place(slot, hash(key))

    def _grow_slots(self) -> int:
        self._starts.append(0)
        self._lengths.append(0)
        self._fresh.append(0.0)
        self._stored.append(0.0)
        self._stale.append(0.0)
        self._tag.append(_NONE)
        self._used.append(0)
        return len(self._lengths) - 1

    def _drop(self, slot: int) -> None:
        chunk, start = self._record(slot)
        self._garbage += 1 + chunk[start] + (self._lengths[slot] & ~_LIVE)
        self._unplace(slot)
        self._untag(slot)
        self._lengths[slot] = 0
        self._free.append(slot)
        self._count -= 1

    def _key_at(self, slot: int) -> str:
        chunk, start = self._record(slot)
        return chunk[start + 1 : start + 1 + chunk[start]].decode()

    # the hash table

    def _place(self, slot: int, hashed: int) -> None:
        table = self._table
        mask = len(table) - 1
        bucket = hashed & mask
        while table[bucket]:
            bucket = (bucket + 1) & mask
        table[bucket] = slot + 1

    def _unplace(self, slot: int) -> None:
        """Take `slot` out of the table, shifting later buckets of its run back (no tombstones)."""
        table = self._table
        mask = len(table) - 1
        hole = hash(self._key_at(slot)) & mask
        while table[hole] != slot + 1:
            hole = (hole + 1) & mask
        bucket = hole
        while True:
            bucket = (bucket + 1) & mask
            held = table[bucket]
            if not held:
                break
            home = hash(self._key_at(held - 1)) & mask
            # The entry may move back into the hole unless its home lies after the hole in its run.
            if (bucket - home) & mask >= (bucket - hole) & mask:
                table[hole] = held
                hole = bucket
        table[hole] = 0

    def _rehash(self, size: int) -> None:
        self._table = array("i", [0]) * size  # allocated to size, no slack
        for slot, length in enumerate(self._lengths):
            if length & _LIVE:
                self._place(slot, hash(self._key_at(slot)))

    def _compact(self) -> None:
        """Copy the live records into a new arena; readers see the old one until the swap."""
        arena, starts = _Arena(self._arena.chunk_size), array("I", self._starts)
        for slot, length in enumerate(self._lengths):
            if length & _LIVE:
                chunk, start = self._record(slot)
                starts[slot] = arena.append(chunk[start : start + 1 + chunk[start] + (length & ~_LIVE)])
        self._version += 1
        self._arena, self._chunks, self._starts, self._garbage = arena, arena.chunks, starts, 0
        self._version += 1

    # the tag index

    def _tag_slot(self, slot: int, tags: frozenset[str]) -> int:
        if not tags:
            return _NONE
        ids = tuple(self._join(tag, slot) for tag in tags)
        if len(ids) == 1:
            return ids[0]
        self._multi[slot] = ids
        return _MULTI

    def _join(self, tag: str, slot: int) -> int:
        tag_id = self._tag_ids.get(tag)
        if tag_id is None:
            tag_id = self._free_tags.pop() if self._free_tags else len(self._tag_names)
            if tag_id == len(self._tag_names):
                self._tag_names.append(tag)
                self._tag_slots.append(array("I"))
            else:
                self._tag_names[tag_id] = tag
                self._tag_slots[tag_id] = array("I")
            self._tag_ids[tag] = tag_id
        slots = self._tag_slots[tag_id]
        self._members += 1
        if isinstance(slots, array):
            slots.append(slot)
            if len(slots) > _SMALL_TAG:
                self._tag_slots[tag_id] = set(slots)
        elif slots is not None:
            slots.add(slot)
        return tag_id

    def _untag(self, slot: int) -> None:
        tag_id = self._tag[slot]
        ids = self._multi.pop(slot, ()) if tag_id == _MULTI else (tag_id,) if tag_id >= 0 else ()
        self._tag[slot] = _NONE
        for one in ids:
            slots = self._tag_slots[one]
            if slots is None:
                continue
            self._members -= 1
            if isinstance(slots, array):
                slots.remove(slot)
            else:
                slots.discard(slot)
            if not slots:
                name = self._tag_names[one]
                assert name is not None
                del self._tag_ids[name]
                self._tag_names[one] = None
                self._tag_slots[one] = None
                self._free_tags.append(one)

    def _tag_bytes(self) -> int:
        return _TAG_BYTES * len(self._tag_ids) + 4 * self._members + 56 * len(self._multi)

    @property
    def bytes(self) -> int:
        """What the store holds: its buffers as allocated (arena garbage and array slack included)."""
        buffers = (self._starts, self._lengths, self._fresh, self._stored, self._stale, self._tag, self._used)
        held = (
            sum(map(sys.getsizeof, buffers))
            + sum(map(sys.getsizeof, self._chunks))
            + sys.getsizeof(self._chunks)
        )
        held += sys.getsizeof(self._table) + sys.getsizeof(self._free)
        return held + self._tag_bytes() + self._codec.bytes_held


class _Arena:
    """Records written into chunks of up to 64 KiB; a record's address is its chunk << 16 | its offset."""

    def __init__(self, chunk_size: int) -> None:
        self.chunk_size = chunk_size
        self.chunks: list[bytearray] = []
        self.written = 0  # bytes of records written, those dropped since included
        self._filling = -1  # the chunk small records go to
        self._fill = 0

    def has_room(self) -> bool:
        """Whether one more chunk can be addressed (65,536 chunks: 4 GiB)."""
        return len(self.chunks) < _MAX_CHUNKS

    def append(self, record: bytes | bytearray) -> int:
        """Write `record`; return its address."""
        self.written += len(record)
        if len(record) > self.chunk_size:
            self.chunks.append(bytearray(record))
            return (len(self.chunks) - 1) << _OFFSET_BITS
        if self._filling < 0 or self._fill + len(record) > self.chunk_size:
            self.chunks.append(bytearray(self.chunk_size))
            self._filling, self._fill = len(self.chunks) - 1, 0
        start = self._fill
        self.chunks[self._filling][start : start + len(record)] = record
        self._fill += len(record)
        return self._filling << _OFFSET_BITS | start


def _at_least(distance: float) -> float:
    """`distance` as a float32 no smaller: `stored_at` read back is never later than stored."""
    if distance > _FLOAT32_MAX:
        return float("inf")
    rounded = _float32(distance)
    return rounded if rounded >= distance else _float32_step(rounded, up=True)


def _at_most(distance: float) -> float:
    """`distance` as a float32 no larger: `stale_until` read back is never later than stored."""
    rounded = _float32(min(distance, _FLOAT32_MAX))
    return rounded if rounded <= distance else _float32_step(rounded, up=False)


def _float32(value: float) -> float:
    rounded: float = _FLOAT32.unpack(_FLOAT32.pack(value))[0]
    return rounded


def _float32_step(value: float, *, up: bool) -> float:
    """The next float32 above (or below) `value`, itself a float32."""
    if value == 0:
        tiny = _float32_from_bits(1)
        return tiny if up else -tiny
    bits: int = _BITS.unpack(_FLOAT32.pack(value))[0]
    return _float32_from_bits(bits + (1 if (value > 0) == up else -1))


def _float32_from_bits(bits: int) -> float:
    value: float = _FLOAT32.unpack(_BITS.pack(bits))[0]
    return value
