"""The time-window batcher: concurrent single-key loads become one `batch_fn` call, DataLoader style.

`Optimizer` routes the leader of each single-key flight through `Batcher.load`
when the app gave a `batch_fn`. The first key of a window leads its batch: it
waits up to the window (or until `max_batch` keys joined, whichever is first),
closes the batch and runs it on its own thread, so the batcher needs no
background thread. Keys arriving after a batch closed open the next one. M
loads arriving together with a max batch of B therefore make ceil(M/B) calls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from optimizer.errors import MissingFromBatch

BatchRunner = Callable[[list[str]], Mapping[str, Any]]


class _Batch:
    __slots__ = ("closed", "done", "error", "keys", "results")

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.closed = False
        self.done = threading.Event()
        self.results: Mapping[str, Any] = {}
        self.error: BaseException | None = None


class Batcher:
    """Groups `load(key)` calls from many threads into batches run by `run_batch`; thread-safe."""

    def __init__(self, run_batch: BatchRunner) -> None:
        self._run_batch = run_batch
        self._cond = threading.Condition()
        self._open: _Batch | None = None

    def load(self, key: str, *, window_s: float, max_batch: int) -> Any:
        """Return `key`'s value from the batch it lands in; raise that batch's error if it failed."""
        with self._cond:
            batch = self._open
            leader = batch is None
            if batch is None:
                batch = self._open = _Batch()
            batch.keys.append(key)
            if len(batch.keys) >= max_batch:
                self._close(batch)
        if leader:
            self._lead(batch, window_s)
        batch.done.wait()
        if batch.error is not None:
            raise batch.error
        try:
            return batch.results[key]
        except KeyError:
            raise MissingFromBatch(key) from None

    def pending(self) -> int:
        """Keys waiting in the open batch (not yet handed to `batch_fn`)."""
        with self._cond:
            return len(self._open.keys) if self._open else 0

    def flush(self) -> None:
        """Close the open batch now, so its leader runs it without waiting out the window."""
        with self._cond:
            if self._open is not None:
                self._close(self._open)

    def _close(self, batch: _Batch) -> None:
        batch.closed = True
        if self._open is batch:
            self._open = None
        self._cond.notify_all()

    def _lead(self, batch: _Batch, window_s: float) -> None:
        deadline = time.monotonic() + window_s
        with self._cond:
            self._cond.wait_for(lambda: batch.closed, max(0.0, deadline - time.monotonic()))
            if not batch.closed:
                self._close(batch)
        try:
            # A key can sit in one batch twice when an invalidated flight was restarted.
            batch.results = self._run_batch(list(dict.fromkeys(batch.keys)))
        except Exception as exc:  # noqa: BLE001 - handed to every waiter of the batch, re-raised there
            batch.error = exc
        finally:
            batch.done.set()
