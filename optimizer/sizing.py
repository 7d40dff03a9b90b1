"""How many bytes a cached value holds; the byte budget of the in-process cache counts these.

Called once per entry when the optimizer stores a value, never on a hit.

The measure is the deep size of the Python objects the entry keeps alive, the
same figure `pympler.asizeof` gives (each distinct object once, rounded up to
8-byte alignment): that is what the process actually holds. `sys.getsizeof`
undercounts a nested dict 3-5x because it ignores what the container points
to, and the JSON-encoded length undercounts too (2 kB of JSON for 12 attempt
dicts are about 4.6 kB of objects). JSON-shaped values (dicts, lists, tuples,
strings, numbers) are walked here, about three times faster than asizeof,
since the size is measured on every miss; any other object is handed to asizeof.
"""

from __future__ import annotations

import sys
from typing import Any

from pympler import asizeof

# What `local.LocalStore` holds for an entry besides its value and key, as tracemalloc sees it on
# CPython 3.11 (64-bit): the Entry record with its GC header (80 bytes), its stored-at float (24;
# fresh and stale bounds that differ add 24 each), the size int (32) and the OrderedDict's slot and
# link node (about 94). Each tag adds the entry's share of the tag index (about 40).
# bench/optimizer_memory.py compares the total against tracemalloc.
ENTRY_OVERHEAD = 230
TAG_OVERHEAD = 40

_LEAVES = frozenset({str, int, float, bool, type(None), bytes})


def measure(key: str, value: Any, tags: int = 0) -> int:
    """Return the bytes an entry for `key` holding `value` under `tags` tags keeps alive, overhead included."""
    return deep_size(value) + ((sys.getsizeof(key) + 15) & ~15) + ENTRY_OVERHEAD + TAG_OVERHEAD * tags


def deep_size(value: Any) -> int:
    """Return the deep size of `value` as `pympler.asizeof` counts it, faster for JSON-shaped values."""
    getsizeof = sys.getsizeof
    if type(value) in _LEAVES:  # an encoded value (bytes, str): no walk
        return (getsizeof(value) + 7) & ~7
    seen: set[int] = set()
    total = 0
    stack = [value]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        kind = type(obj)
        if kind is dict:
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif kind is list or kind is tuple:
            stack.extend(obj)
        elif kind not in _LEAVES:
            total += int(asizeof.asizeof(obj))  # type: ignore[no-untyped-call]
            continue
        total += (getsizeof(obj) + 7) & ~7
    return total
