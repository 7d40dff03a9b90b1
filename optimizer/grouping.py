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


@dataclass(eq=False)
class _Load:
    keys: list[str]
    taken: bool = False  # in a call being run
    finished: bool = False
    results: Mapping[str, Any] = field(default_factory=dict)
    error: BaseException | None = None


class Grouper:
    """Runs `run_batch` for multi-key loads, grouping those that wait for a free call; thread-safe."""

    def __init__(self, run_batch: BatchRunner) -> None:
        self._run_batch = run_batch
        self._cond = threading.Condition()
        self._queue: list[_Load] = []
        self._in_flight = 0
        self.calls = 0  # batch calls made, for tests

    def waiting(self) -> int:
        """Loads queued for a call slot (not counting those in a call being run)."""
        with self._cond:
            return len(self._queue)

    def load_many(self, keys: list[str], *, max_batch: int, max_in_flight: int) -> Mapping[str, Any]:
        """Return the values of `keys` from the call they were grouped into; raise its error if it failed."""
        load = _Load(keys)
        with self._cond:
            self._queue.append(load)
        while self._take_turn(load, max_batch, max_in_flight):
            pass
        if load.error is not None:
            raise load.error
        return load.results

    def _take_turn(self, load: _Load, max_batch: int, max_in_flight: int) -> bool:
        """Wait until `load` is done or a call slot is free; run a group then. False once `load` is done."""
        with self._cond:
            while not load.finished and (load.taken or self._in_flight >= max_in_flight):
                self._cond.wait()
            if load.finished:
                return False
            group = self._take_group(max_batch)
            self._in_flight += 1
        try:
            self._run(group)
        finally:
            with self._cond:
                self._in_flight -= 1
                self.calls += 1
                self._cond.notify_all()
        return True

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
        for member in group:
            member.taken = True
        return group

    def _run(self, group: list[_Load]) -> None:
        keys = list(dict.fromkeys(key for member in group for key in member.keys))
        try:
            results = self._run_batch(keys)
        except Exception as exc:  # noqa: BLE001 - handed to every load of the group, re-raised there
            for member in group:
                member.error = exc
        else:
            for member in group:
                member.results = results
        with self._cond:
            for member in group:
                member.finished = True
