"""The ideal, live: how many backend fetches a perfect cache would have made for the calls seen so far.

`portal/ideal.py` computes C_min after a run from the whole call log: per key,
a greedy cover of its call times by windows of length tau, cut at each
invalidation of the key. The greedy cover is online by nature (a call opens a
window when none is open for its key), so `IdealWindows` counts it as calls
come, with tau = the flag's `ttl_s + stale_s`: `Optimizer` asks `open_until(key)`
on every call (a dict read, no lock) and calls `open(...)` only when that time
has passed, which happens once per key per window. Invalidations (local or from
other instances) close the key's window, as they cut the ideal's.

The count goes out as `optimizer_ideal_fetches_total{fn,path}` (the path of the
call that opened each window), beside the actual key fetches, so that

    eta = (requests - key_fetches) / (requests - ideal_fetches)

can be plotted live (docs/eta.md). Memory: one dict entry per key called
within the last tau (and its tags), pruned every tau; the keys opened at the
same instant (a page's batch) share one float for their end, and a tag keeps
its keys in a list while it has few.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

# A tag's keys are a list up to this many (a student's dozen: 8 bytes a key instead of 60), then a set.
_SMALL_TAG = 32


class IdealWindows:
    """Per-key ideal freshness windows and the count of windows opened, per path; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # key -> end of its open window. Read without the lock by `open_until`.
        self.ends: dict[str, float] = {}
        self._keys_by_tag: dict[str, list[str] | set[str]] = {}
        self._opened = [0, 0]
        self._prune_at = 0.0
        self._last_end = (0.0, 0.0, 0.0)  # (now, tau, now + tau)

    def open(self, key: str, *, now: float, tau: float, path: int, tags: Callable[[], Iterable[str]]) -> None:
        """Open a window for `key` at `now` unless another thread just did; count it under `path`."""
        with self._lock:
            end = self.ends.get(key)
            if end is not None and now < end:
                return
            last_now, last_tau, last_end = self._last_end
            if now != last_now or tau != last_tau:
                last_end = now + tau
                self._last_end = (now, tau, last_end)
            self.ends[key] = last_end
            self._opened[path] += 1
            for tag in tags():
                self._tag(tag, key)
            if now >= self._prune_at:
                self._prune(now)
                self._prune_at = now + max(tau, 1.0)

    def _tag(self, tag: str, key: str) -> None:
        keys = self._keys_by_tag.get(tag)
        if keys is None:
            self._keys_by_tag[tag] = [key]
        elif isinstance(keys, set):
            keys.add(key)
        elif key not in keys:
            keys.append(key)
            if len(keys) > _SMALL_TAG:
                self._keys_by_tag[tag] = set(keys)

    def cut_key(self, key: str) -> None:
        """An invalidation of `key`: its next call opens a new window."""
        with self._lock:
            self.ends.pop(key, None)

    def cut_tag(self, tag: str) -> None:
        """An invalidation of every key tagged `tag`."""
        with self._lock:
            keys = self._keys_by_tag.pop(tag, ())
            for key in keys:
                self.ends.pop(key, None)

    def opened(self) -> tuple[int, int]:
        """Windows opened so far, by path (OPTIMIZED, DIRECT)."""
        with self._lock:
            return self._opened[0], self._opened[1]

    def _prune(self, now: float) -> None:
        # In place: callers hold on to `ends`, and read it while this runs (reads are safe; every
        # write takes the lock). Refilled after `clear()`, since a dict never shrinks on `del`: its
        # table would keep the size of the largest working set. A read between the two finds no
        # window and calls `open`, which waits for the lock and sees the window again.
        ends = self.ends
        still_open = {key: end for key, end in ends.items() if end > now}
        if len(still_open) < len(ends):
            ends.clear()
            ends.update(still_open)
        by_tag: dict[str, list[str] | set[str]] = {}
        for tag, keys in self._keys_by_tag.items():
            live = [k for k in keys if k in ends]
            if live:
                by_tag[tag] = live if len(live) <= _SMALL_TAG else set(live)
        self._keys_by_tag = by_tag
