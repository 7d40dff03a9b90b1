"""Cache storage: the `Cache` boundary the optimizer talks to, and the in-process cache.

`Optimizer` (core.py) is the only caller. It decides what is fresh, what may be
served stale and when a fetch may land; a `Cache` only stores entries, bounds
its memory, and drops keys and tags on invalidation. `RedisCache`
(redis_backend.py) implements the same boundary with a shared tier.

`InProcessCache` keeps its entries in one of three stores, the app's choice:
objects (`local.LocalStore`), packed (`packed.PackedStore`) or both in tiers
(`tiered.TieredStore`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from optimizer.entry import Entry
from optimizer.local import LocalStore
from optimizer.packed import PackedStore
from optimizer.packing import Packing
from optimizer.settings import OptimizerConfig
from optimizer.tiered import TieredStore

__all__ = ["Cache", "Entry", "InProcessCache", "LocalStore", "RemoteInvalidation"]


# Called with (key, None) when a key was invalidated elsewhere, (None, tag) for a tag,
# (None, None) when everything must be treated as invalidated (e.g. after a reconnect).
RemoteInvalidation = Callable[[str | None, str | None], None]


class Cache(ABC):
    """What the optimizer needs from a cache. Implementations must be thread-safe.

    The optimizer calls `put` while holding its flight lock (so an invalidation
    cannot slip between its check and the store) and everything else without it;
    `put` must therefore be quick and local. A shared tier writes in `share`,
    fenced by the token `fence` took before the fetch started.
    """

    def attach(self, *, name: str, config: OptimizerConfig, clock: Callable[[], float]) -> None:  # noqa: B027
        """Bind the cache to one optimized function and its clock; called once by `Optimizer.__init__`."""

    @abstractmethod
    def get(self, key: str) -> Entry | None:
        """Return the entry for `key`, expired or not, or None."""

    def reader(self) -> Callable[[str], Entry | None]:
        """Return the function the optimizer's hit path calls for `get` (after `attach`).

        A cache may hand out its store's own lookup, a Python call less per hit.
        """
        return self.get

    def fence(self, key: str, tags: frozenset[str]) -> Any:
        """Return a token taken before a fetch starts; `share` refuses it if `key` was invalidated since."""
        return None

    def share(self, key: str, entry: Entry, fence: Any) -> None:  # noqa: B027
        """Store `entry` in the shared tier unless `key` or its tags were invalidated since `fence`."""

    @abstractmethod
    def put(self, key: str, entry: Entry) -> None:
        """Store `entry` in process."""

    def put_many(self, entries: Sequence[tuple[str, Entry]]) -> None:
        """`put` each (key, entry); a cache may store them under one acquisition of its lock."""
        for key, entry in entries:
            self.put(key, entry)

    def settle(self) -> None:  # noqa: B027
        """Do the work `put_many` left for later; the optimizer calls it after each store, outside its locks."""

    @abstractmethod
    def invalidate(self, key: str) -> None:
        """Drop `key` everywhere this cache reaches before returning; never raises."""

    @abstractmethod
    def invalidate_tag(self, tag: str) -> None:
        """Drop every entry tagged `tag` everywhere this cache reaches before returning; never raises."""

    @abstractmethod
    def clear(self) -> None:
        """Drop every entry held in process."""

    @abstractmethod
    def contains(self, key: str) -> bool:
        """Whether `key` is held in process (for tests and diagnostics)."""

    def on_remote_invalidation(self, callback: RemoteInvalidation) -> None:  # noqa: B027
        """Register who to tell when another instance invalidated something (shared caches only)."""

    @property
    @abstractmethod
    def bytes(self) -> int:
        """Bytes held in process."""

    @property
    @abstractmethod
    def entries(self) -> int:
        """Entries held in process."""

    @property
    def evictions(self) -> int:
        """Entries evicted by the memory bounds so far."""
        return 0

    def close(self) -> None:  # noqa: B027
        """Release connections and threads."""


class InProcessCache(Cache):
    """The default cache: entries live in this process only, bounded by count and bytes.

    Built by `Optimizer` from its config when no cache is given; bounds given here win.

    Three layouts, the app's choice (bench/optimizer_memory.py, bench/optimizer_gate.py):

    - objects, the default: entries are Python objects in one OrderedDict
      (`LocalStore`): a hit returns the stored value itself, the fastest hit,
      about 540 bytes an entry for a 230-byte value;
    - packed, with `packing`: values must be `bytes` and are held compressed in
      arenas (`packed.PackedStore`), about 96 bytes an entry for the same value,
      at about 1.7 us more per hit (decompression and a new `Entry`);
    - tiered, with `packing` and `hot_share`: the entries stored lately as
      objects in a hot tier of at least that share of the byte budget (and up
      to `pack_above` of it, less what is packed), the older ones packed; an
      entry is compressed when the hot tier pushes it out
      (`tiered.TieredStore`). A hit in the hot tier costs what an objects hit
      costs, one in the packed tier what a packed hit costs.

    With `packing`, a value that is not `bytes` is served but not cached.
    """

    def __init__(
        self,
        config: OptimizerConfig | None = None,
        *,
        max_entries: int | None = None,
        max_bytes: int | None = None,
        packing: Packing | None = None,
        hot_share: float = 0.0,
        pack_above: float | None = None,
    ) -> None:
        if hot_share and packing is None:
            raise ValueError("hot_share needs a packing: the hot tier fronts the packed one")
        self._explicit = config is not None or max_entries is not None or max_bytes is not None
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._packing = packing
        self._hot_share = hot_share
        self._pack_above = pack_above
        self._store = self._build(config or OptimizerConfig())

    def attach(self, *, name: str, config: OptimizerConfig, clock: Callable[[], float]) -> None:
        if not self._explicit:
            self._store = self._build(config)

    def _build(self, config: OptimizerConfig) -> LocalStore | PackedStore | TieredStore:
        max_entries = self._max_entries or config.max_entries
        max_bytes = self._max_bytes or config.max_bytes
        if self._packing is None:
            return LocalStore(max_entries=max_entries, max_bytes=max_bytes)
        if self._hot_share:
            return TieredStore(
                max_entries=max_entries,
                max_bytes=max_bytes,
                packing=self._packing,
                hot_share=self._hot_share,
                pack_above=self._pack_above,
            )
        return PackedStore(max_entries=max_entries, max_bytes=max_bytes, packing=self._packing)

    def get(self, key: str) -> Entry | None:
        return self._store.get(key)

    def reader(self) -> Callable[[str], Entry | None]:
        return self._store.reader()

    def put(self, key: str, entry: Entry) -> None:
        self._store.put(key, entry)

    def put_many(self, entries: Sequence[tuple[str, Entry]]) -> None:
        self._store.put_many(entries)

    def settle(self) -> None:
        self._store.settle()

    def invalidate(self, key: str) -> None:
        self._store.delete(key)

    def invalidate_tag(self, tag: str) -> None:
        self._store.delete_tag(tag)

    def clear(self) -> None:
        self._store.clear()

    def contains(self, key: str) -> bool:
        return self._store.contains(key)

    @property
    def evictions(self) -> int:
        return self._store.evictions

    @property
    def bytes(self) -> int:
        return self._store.bytes

    @property
    def entries(self) -> int:
        return self._store.entries
