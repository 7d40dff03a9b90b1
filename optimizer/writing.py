"""Write-through: the new values of the keys an app writes, stored with the write instead of missed after it.

An app whose write can read back the values it changed (and those the user
will read next, such as the page a form submission leads to) hands them to
the optimizer, which stores them where a plain `invalidate` would only drop
the old ones: the next read is a hit, not a miss that costs another backend
call. `Optimizer.write_through` opens it before the app's write starts:

    write = optimizer.write_through(["s1:3"], also=page_keys, user_id="s1")
    try:
        values = write_and_read_back(write.keys)  # one statement: the write and its read
    except BaseException:
        write.abort()  # drops the changed keys, as `invalidate` does
        raise
    write.commit(values)  # drops the changed keys' old values, stores the new ones

Safety is the loads' (see loading.py): each key read back is registered while
the write runs, every invalidation marks it, and a marked key's value is not
stored. So a value read before a concurrent write of the same key (in this
process, another process or the other tier) never outlives that write's own
invalidation. `commit` invalidates the changed keys first, like `invalidate`,
so that no load that started before the write stores an old value after it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from optimizer.loading import Item, Loader
from optimizer.singleflight import Write


class WriteThrough:
    """One write of some keys and the values read back with it; `commit` or `abort` it once."""

    def __init__(
        self,
        loader: Loader,
        *,
        changed: Sequence[str],
        items: list[Item],
        versioned: Callable[[str], str],
        invalidated: Callable[[str], None],
    ) -> None:
        self._loader = loader
        self._changed = list(changed)
        self._versioned = versioned
        self._invalidated = invalidated
        self._by_key = {key: versioned_key for key, versioned_key, _ in items}
        self._writes: list[Write] = loader.open_writes(items) if items else []
        self._done = False
        #: The keys whose values the write should read back for `commit`: the changed ones and
        #: those of `also` that were not fresh; empty when the user is not on the optimized path.
        self.keys: tuple[str, ...] = tuple(self._by_key)

    def commit(self, values: Mapping[str, Any]) -> None:
        """The write committed: drop the changed keys' old values and loads, store `values` (of `keys`)."""
        self._finish({self._by_key[key]: value for key, value in values.items() if key in self._by_key})

    def abort(self) -> None:
        """The write failed, or may have: drop the changed keys as `Optimizer.invalidate` does, store nothing."""
        self._finish({})

    def _finish(self, values: dict[str, Any]) -> None:
        if self._done:
            raise RuntimeError("a write-through is committed or aborted once")
        self._done = True
        changed = [self._versioned(key) for key in self._changed]
        self._loader.store_written(self._writes, values, changed)
        for key in changed:
            self._invalidated(key)
