"""Single-flight: concurrent loads of one key share one backend call, its result and its exception.

`Optimizer` (core.py) opens a `Flight` per key it has to load. The first caller
becomes the leader and runs the load; later callers join and wait. Invalidation
detaches the flight from the table and marks it `invalidated`: callers already
waiting still get its result (they asked before the write), callers arriving
after the invalidation start a new flight, and the invalidated flight's result is
never stored. This is a per-key generation counter (as TanStack Query keeps one), kept on the
flight object itself so no counter outlives the key.
"""

from __future__ import annotations

import contextlib
import threading
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


class FlightTable:
    """The flights currently in progress, by key. All methods are thread-safe.

    `lock` is shared with the optimizer, which must hold it while it checks
    `flight.invalidated` and stores the result, so that an invalidation either
    happens before the store (and the store is skipped) or after it (and removes it).
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._flights: dict[str, Flight] = {}

    def join_or_start(self, key: str, tags: frozenset[str]) -> tuple[Flight, bool]:
        """Return the flight for `key` and whether the caller leads it (True) or joined it (False)."""
        with self.lock:
            flight = self._flights.get(key)
            if flight is not None:
                return flight, False
            flight = Flight(key, tags)
            self._flights[key] = flight
            return flight, True

    def start_if_idle(self, key: str, tags: frozenset[str]) -> Flight | None:
        """Start a flight for `key` unless one runs already; for refreshes that nobody waits on."""
        with self.lock:
            if key in self._flights:
                return None
            flight = Flight(key, tags)
            self._flights[key] = flight
            return flight

    def finish(self, flight: Flight) -> None:
        """Remove `flight` from the table if it is still the current one for its key."""
        with self.lock:
            self._detach(flight)

    def invalidate_key(self, key: str) -> None:
        with self.lock:
            flight = self._flights.pop(key, None)
            if flight is not None:
                flight.invalidated = True

    def invalidate_tag(self, tag: str) -> None:
        with self.lock:
            for flight in [f for f in self._flights.values() if tag in f.tags]:
                flight.invalidated = True
                del self._flights[flight.key]

    def invalidate_all(self) -> None:
        with self.lock:
            for flight in self._flights.values():
                flight.invalidated = True
            self._flights.clear()

    def abandon(self, error: BaseException) -> None:
        """Fail every flight still in the table with `error`: their loads will never finish (close)."""
        with self.lock:
            flights = list(self._flights.values())
            self._flights.clear()
        for flight in flights:
            flight.invalidated = True
            if not flight.done:
                flight.fail(error)

    def in_flight(self) -> int:
        with self.lock:
            return len(self._flights)

    def _detach(self, flight: Flight) -> None:
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]
