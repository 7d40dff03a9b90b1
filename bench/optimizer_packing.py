"""What the packed layout's compression of one value costs: the codec against priming a compressor per value.

The packed layout (`optimizer.packing.Codec`) compresses every value it stores
with the app's preset dictionary. Priming a zlib compressor with a dictionary
costs more than compressing a value of a few hundred bytes, so the codec primes
one at start and compresses each value on a copy of it, in a window sized to
the dictionary. This times, for the portal's fragments (two attempts each, as
`bench/optimizer_memory.py` makes them) and its preset dictionary:

- codec: `Codec.pack`, as the store calls it;
- primed per value: a new `zlib.compressobj` with the dictionary per value, in
  the largest window (15 bits) at zlib's default memory level, as before.

Rounds alternate between the two (`--repeats` each); every output is checked to
decompress to its value. Reports microseconds a value (min / median / max of
the rounds) and the mean compressed size, and writes
bench/results/optimizer_packing.json.

    .venv/bin/python bench/optimizer_packing.py [--values 2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.machine import write_result  # noqa: E402
from optimizer import Packing  # noqa: E402
from optimizer.packing import Codec  # noqa: E402
from portal import fragments  # noqa: E402

_START_MS = 1_776_929_940_000


def portal_fragments(count: int) -> list[bytes]:
    """Fragments of two attempts each, varied the way seeded students' are."""
    return [
        fragments.encode(
            (
                (29_601 + 2 * n, 1 + n % 60, n % 101, _START_MS + n * 3_600_000),
                (29_602 + 2 * n, 1 + (n + 7) % 60, (n * 7) % 101, _START_MS + n * 3_600_000 + 60_000),
            )
        )
        for n in range(count)
    ]


def primed_per_value(zdict: bytes) -> Callable[[bytes], bytes]:
    def pack(value: bytes) -> bytes:
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, zdict=zdict)
        return compressor.compress(value) + compressor.flush()

    return pack


def time_round(pack: Callable[[bytes], bytes], values: list[bytes]) -> tuple[float, list[bytes]]:
    started = time.perf_counter()
    packed = [pack(value) for value in values]
    return (time.perf_counter() - started) / len(values) * 1e6, packed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--values", type=int, default=2000, help="fragments compressed per round")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of each, alternating")
    args = parser.parse_args()
    zdict = fragments.preset_dictionary()
    codec = Codec(Packing(zdict=zdict))
    candidates = {
        "codec": (codec.pack, codec.wbits),
        "primed_per_value": (primed_per_value(zdict[-32768:]), -15),
    }
    values = portal_fragments(args.values)
    timings: dict[str, list[float]] = {name: [] for name in candidates}
    sizes: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, (pack, wbits) in candidates.items():
            us, packed = time_round(pack, values)
            for value, data in zip(values, packed, strict=True):
                assert zlib.decompressobj(wbits, zdict=zdict[-32768:]).decompress(data) == value, name
            timings[name].append(us)
            sizes[name] = sum(map(len, packed)) / len(packed)
    figures = {
        "values": args.values,
        "repeats": args.repeats,
        "value_bytes_mean": sum(map(len, values)) / len(values),
        "dictionary_bytes": len(zdict),
        "codec_window_bits": -codec.wbits,
    }
    for name, rounds in timings.items():
        spread = {"min": min(rounds), "median": statistics.median(rounds), "max": max(rounds)}
        figures[name] = {
            "us_per_value": {k: round(v, 2) for k, v in spread.items()},
            "bytes_mean": sizes[name],
        }
        print(
            f"{name:18} {spread['min']:6.2f} / {spread['median']:6.2f} / {spread['max']:6.2f} us a value"
            f"  (min/median/max), {sizes[name]:.1f} bytes of {figures['value_bytes_mean']:.0f}"
        )
    ratio = statistics.median(timings["primed_per_value"]) / statistics.median(timings["codec"])
    figures["speedup_median"] = round(ratio, 2)
    print(f"codec is {ratio:.2f}x faster (medians)")
    command = f"python bench/optimizer_packing.py --values {args.values} --repeats {args.repeats}"
    print(f"wrote {write_result('optimizer_packing', figures, command=command)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
