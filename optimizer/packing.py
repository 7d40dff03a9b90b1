"""How the packed in-process layout (`packed.PackedStore`) turns a value into the bytes it keeps.

An app that caches `bytes` values (the portal caches encoded JSON fragments)
picks the packed layout with a `Packing` given to `InProcessCache`. Values are
held as raw DEFLATE streams primed with the app's preset dictionary
(`zlib.compressobj(zdict=...)`): a small value shares most of its bytes with
the dictionary (field names, punctuation, common prefixes), so a 230-byte
fragment keeps about 45 bytes. Compression runs once per store, decompression
on every hit (with the new `Entry`, about 1.7 us more than a hit on the
objects layout, see bench/optimizer_gate.py).

Priming a compressor with the dictionary costs more than compressing a small
value, so the codec primes one at start and compresses each value on a copy
of it; the window is the smallest that holds the dictionary and a value of a
few KiB (a 7 KiB dictionary: 16 KiB), so a copy moves a quarter of the state.
That halves a 227-byte fragment's compression, same size (bench/optimizer_packing.py).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

# Raw DEFLATE (no zlib header or checksum: 6 bytes less a value); negative window bits say raw.
_MAX_WINDOW_BITS = 15
_MIN_WINDOW_BITS = 9
# Room in the window after the dictionary: matches reach back over a value this long.
_VALUE_ROOM = 4096
# zlib's hash table size: 2 ** (level + 7) entries. 5 halves the state a copy moves, same output here.
_MEM_LEVEL = 5
# zlib's deflate state beyond the window and hash buffers (zconf.h's formula): 6,152 bytes by tracemalloc.
_DEFLATE_STATE_BYTES = 6_152


@dataclass(frozen=True)
class Packing:
    """The packed layout's settings.

    :param zdict: preset dictionary: bytes shaped like the values (at most 32 KiB are used).
        Empty means plain raw DEFLATE, which saves little on values of a few hundred bytes.
    :param level: zlib compression level, 1-9.
    """

    zdict: bytes = b""
    level: int = 9

    def __post_init__(self) -> None:
        if not 1 <= self.level <= 9:
            raise ValueError(f"Packing.level must be 1-9, got {self.level!r}")


class Codec:
    """Compresses values with the preset dictionary of a `Packing`; thread-safe."""

    def __init__(self, packing: Packing) -> None:
        self._zdict = packing.zdict[-32768:]
        self.zdict = self._zdict  # the hit path decompresses inline (`packed.PackedStore.get`)
        window = (len(self._zdict) + _VALUE_ROOM - 1).bit_length()
        self.wbits = -min(max(window, _MIN_WINDOW_BITS), _MAX_WINDOW_BITS)
        options = (packing.level, zlib.DEFLATED, self.wbits, _MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY)
        self._primed = (
            zlib.compressobj(*options, zdict=self._zdict) if self._zdict else zlib.compressobj(*options)
        )
        # What zlib allocates for it (zconf.h: (1 << (windowBits + 2)) + (1 << (memLevel + 9))).
        self._primed_bytes = (1 << (-self.wbits + 2)) + (1 << (_MEM_LEVEL + 9)) + _DEFLATE_STATE_BYTES
        self.unpack: Callable[[bytes | bytearray], bytes] = (
            self._unpack_with if self._zdict else self._unpack_plain
        )

    @property
    def bytes_held(self) -> int:
        """What the codec keeps: the dictionary and its primed compressor's zlib state."""
        return len(self._zdict) + self._primed_bytes

    def pack(self, value: bytes) -> bytes:
        compressor = self._primed.copy()  # zlib's copy() holds the object's own lock
        return compressor.compress(value) + compressor.flush()

    def _unpack_with(self, data: bytes | bytearray) -> bytes:
        return zlib.decompressobj(self.wbits, zdict=self._zdict).decompress(data)

    def _unpack_plain(self, data: bytes | bytearray) -> bytes:
        return zlib.decompress(data, self.wbits)
