"""Read-your-writes under concurrency: once `invalidate` returns, no call that starts afterwards, on any
instance, returns data older than the write, whatever loads, refreshes and batches are in flight."""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from optimizer import Optimizer, OptimizerConfig, RedisCache
from tests.optimizer.conftest import run_threads

KEYS = [f"{student}/series-{series}" for student in range(3) for series in range(3)]


class VersionedStore:
    """The database: each key has a version bumped by writes; a read sees the version of its start."""

    def __init__(self) -> None:
        self.versions = dict.fromkeys(KEYS, 0)
        self.floor = dict.fromkeys(KEYS, 0)  # the newest version whose invalidation has returned
        self.rng = random.Random(7)
        self.lock = threading.Lock()

    def read(self, key: str) -> int:
        version = self.versions[key]
        if self.rng.random() < 0.3:
            time.sleep(0.001)  # a slow query, so reads overlap writes; no test step waits on it
        return version

    def read_many(self, keys: list[str]) -> dict[str, int]:
        return {key: self.read(key) for key in keys}


def _reached(completed: list[int], target: int) -> bool:
    return completed[0] >= target


def hammer(
    instances: list[Optimizer], store: VersionedStore, *, writes: int, by_tag: bool | None, writers: int = 1
) -> list[str]:
    """Write on instance 0 (`writers` threads) while readers call every instance; return the violations.

    By default each write invalidates its key (or its tag); with `by_tag=None` it writes
    through instead (`Optimizer.write_through`), reading back a snapshot taken before its
    own write: a concurrent write of the same key is missing from it.
    """
    done = threading.Event()
    violations: list[str] = []
    reads = threading.Condition()
    completed = [0]

    def reader(opt: Optimizer, seed: int) -> None:
        rng = random.Random(seed)
        while not done.is_set():
            keys = rng.sample(KEYS, 3)
            floors = {key: store.floor[key] for key in keys}
            if rng.random() < 0.5:
                values = {keys[0]: opt(keys[0], user_id="s1")}
            else:
                values = opt.get_many(keys, user_id="s1")
            for key, value in values.items():
                if value < floors[key]:
                    violations.append(f"{key}: read {value} after version {floors[key]} was invalidated")
            with reads:
                completed[0] += 1
                reads.notify_all()

    threads = [
        threading.Thread(target=reader, args=(opt, i * 10 + n))
        for i, opt in enumerate(instances)
        for n in range(3)
    ]
    for thread in threads:
        thread.start()

    def write(rng: random.Random) -> None:
        key = rng.choice(KEYS)
        through = None
        if by_tag is None:
            through = instances[0].write_through([key], also=rng.sample(KEYS, 3), user_id="s1")
        with store.lock:
            snapshot = dict(store.versions)
            store.versions[key] += 1
            version = store.versions[key]
        if rng.random() < 0.3:
            time.sleep(0.001)  # a slow statement, so writes overlap; no test step waits on it
        if through is not None:
            through.commit({k: version if k == key else snapshot[k] for k in through.keys})
        elif by_tag:
            instances[0].invalidate_tag(f"student:{key.split('/')[0]}")
        else:
            instances[0].invalidate(key)
        with store.lock:
            store.floor[key] = max(store.floor[key], version)

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(writes):
            # Let the readers fill the cache between writes, so reads race invalidations of cached data.
            with reads:
                target = completed[0] + 10
                assert reads.wait_for(functools.partial(_reached, completed, target), timeout=30), (
                    "readers stalled"
                )
            write(rng)

    try:
        assert run_threads(writers, writer) == [None] * writers
    finally:
        done.set()
        for thread in threads:
            thread.join(30)
    return violations


def _tags(key: str) -> list[str]:
    return [f"student:{key.split('/')[0]}"]


def _build(store: VersionedStore, cache_factory: Callable[[], object] | None, batched: bool) -> Optimizer:
    return Optimizer(
        store.read,
        name="ryw",
        batch_fn=store.read_many if batched else None,
        config=OptimizerConfig(ttl_s=600, stale_s=600, batch_window_ms=1, max_batch=4),
        cache=cache_factory() if cache_factory else None,  # type: ignore[arg-type]
        tags=_tags,
        registry=CollectorRegistry(),
    )


@pytest.mark.parametrize("by_tag", [False, True], ids=["by-key", "by-tag"])
@pytest.mark.parametrize("batched", [False, True], ids=["single", "batched"])
def test_no_read_after_an_invalidation_returns_older_data_in_process(by_tag, batched):
    store = VersionedStore()
    opt = _build(store, None, batched)
    try:
        violations = hammer([opt], store, writes=100, by_tag=by_tag)
    finally:
        opt.close()
    assert violations == []
    assert opt.stats()["hits"] > 0  # the cache was in play, not bypassed


@pytest.mark.parametrize("batched", [False, True], ids=["single", "batched"])
def test_no_read_after_overlapping_writes_through_returns_older_data(batched):
    store = VersionedStore()
    opt = _build(store, None, batched)
    try:
        violations = hammer([opt], store, writes=100, by_tag=None, writers=3)
    finally:
        opt.close()
    assert violations == []
    assert opt.stats()["hits"] > 0


@pytest.mark.integration
@pytest.mark.parametrize("by_tag", [False, True, None], ids=["by-key", "by-tag", "write-through"])
def test_no_read_on_any_instance_after_an_invalidation_returns_older_data_with_redis(redis_url, by_tag):
    import uuid

    namespace = f"rgtest-{uuid.uuid4().hex[:10]}"
    store = VersionedStore()
    caches: list[RedisCache] = []

    def factory() -> RedisCache:
        cache = RedisCache(redis_url, namespace=namespace)
        caches.append(cache)
        return cache

    instances = [_build(store, factory, batched=True) for _ in range(2)]
    try:
        assert all(cache.wait_subscribed() for cache in caches)
        violations = hammer(
            instances, store, writes=60, by_tag=by_tag, writers=1 if by_tag is not None else 3
        )
    finally:
        for opt in instances:
            opt.close()
        import redis

        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{namespace}:*"))
        if keys:
            client.delete(*keys)
        client.close()
    assert violations == []
    assert instances[1].stats()["hits"] > 0
