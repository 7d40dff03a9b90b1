"""How the packed in-process layout (`packed.PackedStore`) turns a value into the bytes it keeps.

An app that caches `bytes` values (the portal caches encoded JSON fragments)
picks the packed layout with a `Packing` given to `InProcessCache`. Values are
held as raw DEFLATE streams primed with the app's preset dictionary
(`zlib.compressobj(zdict=...)`): a small value shares most of its bytes with
the dictionary (field names, punctuation, common prefixes), so a 230-byte
fragment keeps about 45 bytes. Compression runs once per store, decompression
on every hit (with the new `Entry`, about 1.7 us more than a hit on the
objects layout, see bench/optimizer_gate.py).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

# Raw DEFLATE (no zlib header or checksum: 6 bytes less a value) in the largest window.
WBITS = -15
_MEM_LEVEL = 8


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
        self._level = packing.level
        self.unpack: Callable[[bytes | bytearray], bytes] = (
            self._unpack_with if self._zdict else self._unpack_plain
        )

    @property
    def bytes_held(self) -> int:
        """What the codec keeps: the dictionary (a compressor's 260 KiB live only while it packs)."""
        return len(self._zdict)

    def pack(self, value: bytes) -> bytes:
        if self._zdict:
            compressor = zlib.compressobj(
                self._level, zlib.DEFLATED, WBITS, _MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY, zdict=self._zdict
            )
        else:
            compressor = zlib.compressobj(self._level, zlib.DEFLATED, WBITS, _MEM_LEVEL)
        return compressor.compress(value) + compressor.flush()

    def _unpack_with(self, data: bytes | bytearray) -> bytes:
        return zlib.decompressobj(WBITS, zdict=self._zdict).decompress(data)

    @staticmethod
    def _unpack_plain(data: bytes | bytearray) -> bytes:
        return zlib.decompress(data, WBITS)
