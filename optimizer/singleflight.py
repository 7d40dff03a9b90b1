"""Single-flight: concurrent loads of one key share one backend call, its result and its exception.

`Optimizer` (core.py) opens a `Flight` per key it has to load. The first caller
becomes the leader and runs the load; later callers join and wait. Invalidation
detaches the flight from the table and marks it `invalidated`: callers already
waiting still get its result (they asked before the write), callers arriving
after the invalidation start a new flight, and the invalidated flight's result is
never stored. This is a per-key generation counter (as TanStack Query keeps one), kept on the
flight object itself so no counter outlives the key.

A write-through (`Optimizer.write_through`) registers a `Write` per key for the
time the app's own write runs: every invalidation marks it as it marks a flight,
so values read with the write are stored only if nothing else changed their key
meanwhile.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Sequence
from typing import Any


class Flight:
    """One in-progress load of one key: a small future that also carries invalidation.

    Completion is a plain lock, held from creation until the leader finishes: a waiter
    acquires and releases it. Most flights of a cold burst are never joined, and a lock
    costs a tenth of a `threading.Event` (a condition and a lock) to create.
    """

    __slots__ = ("_done", "_error", "_finished", "_value", "invalidated", "key", "tags")

    def __init__(self, key: str, tags: frozenset[str]) -> None:
        self.key = key
        self.tags = tags
        self.invalidated = False
        self._done = threading.Lock()
        self._done.acquire()
        self._finished = False
        self._value: Any = None
        self._error: BaseException | None = None

    def resolve(self, value: Any) -> None:
        self._value = value
        self._finish()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._finish()

    def _finish(self) -> None:
        self._finished = True
        # Finished twice only when `FlightTable.abandon` races the leader at close: no harm.
        with contextlib.suppress(RuntimeError):
            self._done.release()

    @property
    def done(self) -> bool:
        return self._finished

    def wait(self) -> Any:
        """Block until the leader finishes; return its value or raise its exception."""
        if not self._finished:
            with self._done:
                pass
        if self._error is not None:
            raise self._error
        return self._value


class Write:
    """One key an app is writing and reading back (`FlightTable.open_writes`); `invalidated` once anything else changed it."""

    __slots__ = ("fence", "invalidated", "key", "tags")

    def __init__(self, key: str, tags: frozenset[str], fence: Any) -> None:
        self.key = key
        self.tags = tags
        self.fence = fence
        self.invalidated = False


class FlightTable:
    """The flights currently in progress, by key and by tag. All methods are thread-safe.

    `lock` is shared with the optimizer, which must hold it while it checks
    `flight.invalidated` and stores the result, so that an invalidation either
    happens before the store (and the store is skipped) or after it (and removes it).
    The tag index makes a tag's invalidation cost its own flights, not a scan of
    every flight: a burst of submits meets a table of thousands.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._flights: dict[str, Flight] = {}
        self._by_tag: dict[str, dict[str, Flight]] = {}
        # Writes in progress by key; few at once (a write's keys live for one statement), so a tag scans them.
        self._writes: dict[str, list[Write]] = {}

    def join_or_start(self, key: str, tags: frozenset[str]) -> tuple[Flight, bool]:
        """Return the flight for `key` and whether the caller leads it (True) or joined it (False)."""
        return self.join_or_start_many([(key, tags)])[0]

    def join_or_start_many(self, keys: Sequence[tuple[str, frozenset[str]]]) -> list[tuple[Flight, bool]]:
        """`join_or_start` for each (key, tags), taking the lock once: a cold page's dozen keys contend once."""
        joined: list[tuple[Flight, bool]] = []
        with self.lock:
            for key, tags in keys:
                flight = self._flights.get(key)
                joined.append((flight, False) if flight is not None else (self._add(Flight(key, tags)), True))
        return joined

    def start_if_idle(self, key: str, tags: frozenset[str]) -> Flight | None:
        """Start a flight for `key` unless one runs already; for refreshes that nobody waits on."""
        with self.lock:
            if key in self._flights:
                return None
            return self._add(Flight(key, tags))

    def finish(self, flight: Flight) -> None:
        """Remove `flight` from the table if it is still the current one for its key."""
        self.finish_many([flight])

    def finish_many(self, flights: Iterable[Flight]) -> None:
        """`finish` each flight, taking the lock once."""
        with self.lock:
            for flight in flights:
                if self._flights.get(flight.key) is flight:
                    self._remove(flight)

    def invalidate_key(self, key: str, *, sparing: Sequence[Write] = ()) -> None:
        """Mark and detach `key`'s flight and mark its writes, but those in `sparing`."""
        with self.lock:
            flight = self._flights.get(key)
            if flight is not None:
                flight.invalidated = True
                self._remove(flight)
            for write in self._writes.get(key, ()):
                if write not in sparing:
                    write.invalidated = True

    def invalidate_tag(self, tag: str) -> None:
        with self.lock:
            for flight in list(self._by_tag.get(tag, {}).values()):
                flight.invalidated = True
                self._remove(flight)
            for writes in self._writes.values():
                for write in writes:
                    if tag in write.tags:
                        write.invalidated = True

    def invalidate_all(self) -> None:
        with self.lock:
            for flight in self._flights.values():
                flight.invalidated = True
            self._flights.clear()
            self._by_tag.clear()
            for writes in self._writes.values():
                for write in writes:
                    write.invalidated = True

    def open_writes(self, keys: Sequence[tuple[str, frozenset[str], Any]]) -> list[Write]:
        """Register a `Write` for each (key, tags, fence) until `close_writes`: invalidations mark it."""
        with self.lock:
            opened = [Write(key, tags, fence) for key, tags, fence in keys]
            for write in opened:
                self._writes.setdefault(write.key, []).append(write)
            return opened

    def close_writes(self, writes: Iterable[Write]) -> None:
        with self.lock:
            for write in writes:
                others = self._writes[write.key]
                others.remove(write)
                if not others:
                    del self._writes[write.key]

    def abandon(self, error: BaseException) -> None:
        """Fail every flight still in the table with `error`: their loads will never finish (close)."""
        with self.lock:
            flights = list(self._flights.values())
            self._flights.clear()
            self._by_tag.clear()
        for flight in flights:
            flight.invalidated = True
            if not flight.done:
                flight.fail(error)

    def in_flight(self) -> int:
        with self.lock:
            return len(self._flights)

    # under the lock

    def _add(self, flight: Flight) -> Flight:
        self._flights[flight.key] = flight
        for tag in flight.tags:
            self._by_tag.setdefault(tag, {})[flight.key] = flight
        return flight

    def _remove(self, flight: Flight) -> None:
        del self._flights[flight.key]
        for tag in flight.tags:
            flights = self._by_tag.get(tag)
            if flights is not None and flights.get(flight.key) is flight:
                del flights[flight.key]
                if not flights:
                    del self._by_tag[tag]
