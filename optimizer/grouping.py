"""Group loading: concurrent multi-key misses share batch calls while the backend is busy.

`Optimizer.get_many` loads the keys a page misses in one `batch_fn` call. Under a
burst, many pages miss at once and each pays its own call: a round trip and a
query's fixed cost per page. `Grouper` runs at most `max_in_flight` calls at a
time; a load that arrives while they are all busy queues, and the next caller
to get a turn takes every queued load (up to `max_batch` keys) into one call,
as a database groups commits. A load that arrives when a call slot is free runs
at once, so a quiet system adds no wait. If a grouped call fails, every load in
it gets the error.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from optimizer.batching import BatchRunner


def _held_lock() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


@dataclass(eq=False)
class _Load:
    keys: list[str]
    # Held until this load's thread is woken, once: its load finished, or a call was handed to it.
    wake: threading.Lock = field(default_factory=_held_lock)
    handed: list[_Load] | None = None  # the group this load's thread was handed to run
    finished: bool = False
    results: Mapping[str, Any] = field(default_factory=dict)
    error: BaseException | None = None


class Grouper:
    """Runs `run_batch` for multi-key loads, grouping those that wait for a free call; thread-safe.

    A finished call hands its slot straight to the thread of the oldest waiting load,
    with the group it is to run, and wakes only the threads whose loads it finished:
    each waiting thread is woken once, however many wait.
    """

    def __init__(self, run_batch: BatchRunner) -> None:
        self._run_batch = run_batch
        self._lock = threading.Lock()
        self._queue: list[_Load] = []
        self._in_flight = 0
        self.calls = 0  # batch calls made, for tests

    def waiting(self) -> int:
        """Loads queued for a call slot (not counting those in a call being run)."""
        with self._lock:
            return len(self._queue)

    def load_many(self, keys: list[str], *, max_batch: int, max_in_flight: int) -> Mapping[str, Any]:
        """Return the values of `keys` from the call they were grouped into; raise its error if it failed."""
        load = _Load(keys)
        group: list[_Load] | None = None
        with self._lock:
            self._queue.append(load)
            if self._in_flight < max_in_flight:
                self._in_flight += 1
                group = self._take_group(max_batch)
        while True:
            while group is not None:
                self._run(group)
                group = self._after_run(group, load, max_batch)
            if load.finished:
                break
            load.wake.acquire()
            group, load.handed = load.handed, None
        if load.error is not None:
            raise load.error
        return load.results

    def _after_run(self, group: list[_Load], runner: _Load, max_batch: int) -> list[_Load] | None:
        """Finish `group`, then pass the slot on; return the group `runner`'s thread runs next, if any."""
        with self._lock:
            self.calls += 1
            for member in group:
                member.finished = True
                if member is not runner:
                    member.wake.release()
            if not self._queue:
                self._in_flight -= 1
                return None
            following = self._take_group(max_batch)
            if runner in following:
                return following
            following[0].handed = following
            following[0].wake.release()
            return None

    def _take_group(self, max_batch: int) -> list[_Load]:
        """The oldest queued loads, as many as fit in `max_batch` keys (at least one); caller holds the lock."""
        size = 0
        count = 0
        for queued in self._queue:
            if count and size + len(queued.keys) > max_batch:
                break
            size += len(queued.keys)
            count += 1
        group = self._queue[:count]
        del self._queue[:count]
        return group

    def _run(self, group: list[_Load]) -> None:
        keys = list(dict.fromkeys(key for member in group for key in member.keys))
        try:
            results = self._run_batch(keys)
        except BaseException as exc:  # noqa: BLE001 - handed to every load of the group, re-raised there
            for member in group:
                member.error = exc
        else:
            for member in group:
                member.results = results
