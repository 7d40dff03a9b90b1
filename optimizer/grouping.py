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

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from optimizer.batching import BatchRunner
from optimizer.handoff import HandOff


@dataclass(eq=False)
class _Load:
    keys: list[str]
    results: Mapping[str, Any] = field(default_factory=dict)
    error: BaseException | None = None


class Grouper:
    """Runs `run_batch` for multi-key loads, grouping those that wait for a free call; thread-safe.

    The calls run on a `HandOff`: a finished call hands its slot straight to the thread of
    the oldest waiting load, and wakes only the threads whose loads it finished.
    """

    def __init__(self, run_batch: BatchRunner) -> None:
        self._run_batch = run_batch
        self._calls: HandOff[_Load] = HandOff(self._run)

    @property
    def calls(self) -> int:
        """Batch calls made, for tests and benchmarks."""
        return self._calls.runs

    def waiting(self) -> int:
        """Loads queued for a call slot (not counting those in a call being run)."""
        return self._calls.waiting

    def load_many(self, keys: list[str], *, max_batch: int, max_in_flight: int) -> Mapping[str, Any]:
        """Return the values of `keys` from the call they were grouped into; raise its error if it failed."""
        load = _Load(keys)
        self._calls.join(load, weight=len(keys), max_batch=max_batch, max_in_flight=max_in_flight)
        if load.error is not None:
            raise load.error
        return load.results

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
