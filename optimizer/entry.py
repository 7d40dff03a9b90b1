"""`Entry`: one cached value with its freshness bounds, what every cache tier stores and returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: The tags of an untagged entry, shared: `frozenset()` makes a new 216-byte object on each call.
NO_TAGS: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Entry:
    """One cached value: fresh until `fresh_until`, servable stale until `stale_until` (clock time).

    `stored_at` lets a TTL lowered by the flag payload apply to entries stored before the change.
    """

    value: Any
    fresh_until: float
    stale_until: float
    size: int
    tags: frozenset[str] = NO_TAGS
    stored_at: float = float("-inf")
