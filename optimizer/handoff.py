"""Group commit with a hand-off: what arrives while every run slot is busy is run together next.

A thread joins with its item. If fewer than `max_in_flight` groups are running,
it runs at once the group of everything queued (itself among it); otherwise its
item queues. A finished group hands its slot straight to the thread of the
oldest queued item, with the group that thread is to run, and wakes only the
threads whose items it ran: each waiting thread is woken once, however many
wait, where a condition's notify_all would wake them all after every group to
find their turn not come. A slot frees only when the queue is empty, so a group
always holds the item of the thread that runs it.

`optimizer.grouping.Grouper` runs the optimizer's grouped batch loads on it;
the portal's grouped INSERTs (`portal.submits`) too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


def _held_lock() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


@dataclass(eq=False)
class _Waiter(Generic[T]):
    item: T
    weight: int
    # Held until this item's thread is woken, once: its item was run, or a group was handed to it.
    wake: threading.Lock = field(default_factory=_held_lock)
    handed: list[_Waiter[T]] | None = None  # the group this item's thread was handed to run


class HandOff(Generic[T]):
    """Runs `run` on groups of the items threads join with, at most `max_in_flight` groups at once; thread-safe.

    `run` gets a group's items in the order they came; it records each item's outcome on
    the item itself. What it raises comes out of `join` in the thread that ran the group,
    once the next group has been handed on.
    """

    def __init__(self, run: Callable[[list[T]], None]) -> None:
        self._run = run
        self._lock = threading.Lock()
        self._queue: list[_Waiter[T]] = []
        self._in_flight = 0
        self.runs = 0  # groups run, for metrics and tests

    @property
    def waiting(self) -> int:
        """Items queued for a run slot (not counting those in a group being run)."""
        with self._lock:
            return len(self._queue)

    def join(self, item: T, *, weight: int = 1, max_batch: int, max_in_flight: int) -> None:
        """Return once a group holding `item` has been run, by this thread or another.

        A group takes the oldest queued items while their weights fit in `max_batch` (at least one).
        """
        waiter = _Waiter(item, weight)
        group: list[_Waiter[T]] | None = None
        with self._lock:
            self._queue.append(waiter)
            if self._in_flight < max_in_flight:
                self._in_flight += 1
                group = self._take_group(max_batch)
        if group is None:
            waiter.wake.acquire()
            group, waiter.handed = waiter.handed, None
        if group is not None:
            try:
                self._run([member.item for member in group])
            finally:
                self._hand_on(group, max_batch)

    def _hand_on(self, group: list[_Waiter[T]], max_batch: int) -> None:
        """Wake `group`'s threads, then hand the slot and the next group, if any, to the oldest queued item's."""
        with self._lock:
            self.runs += 1
            for member in group:
                member.wake.release()
            if not self._queue:
                self._in_flight -= 1
                return
            following = self._take_group(max_batch)
            following[0].handed = following
            following[0].wake.release()

    def _take_group(self, max_batch: int) -> list[_Waiter[T]]:
        """The oldest queued items whose weights fit in `max_batch` (at least one); caller holds the lock."""
        size = 0
        count = 0
        for queued in self._queue:
            if count and size + queued.weight > max_batch:
                break
            size += queued.weight
            count += 1
        group = self._queue[:count]
        del self._queue[:count]
        return group
