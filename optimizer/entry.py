"""`Entry`: one cached value with its freshness bounds, what every cache tier stores and returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Entry:
    """One cached value: fresh until `fresh_until`, servable stale until `stale_until` (clock time).

    `stored_at` lets a TTL lowered by the flag payload apply to entries stored before the change.
    """

    value: Any
    fresh_until: float
    stale_until: float
    size: int
    tags: frozenset[str] = frozenset()
    stored_at: float = float("-inf")
