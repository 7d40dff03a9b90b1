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

KEYS = [f"{student}/series-{series}" for student in range(3) for series in range(3)]


class VersionedStore:
    """The database: each key has a version bumped by writes; a read sees the version of its start."""

    def __init__(self) -> None:
        self.versions = dict.fromkeys(KEYS, 0)
        self.floor = dict.fromkeys(KEYS, 0)  # the newest version whose invalidation has returned
        self.rng = random.Random(7)

    def read(self, key: str) -> int:
        version = self.versions[key]
        if self.rng.random() < 0.3:
            time.sleep(0.001)  # a slow query, so reads overlap writes; no test step waits on it
        return version

    def read_many(self, keys: list[str]) -> dict[str, int]:
        return {key: self.read(key) for key in keys}


def _reached(completed: list[int], target: int) -> bool:
    return completed[0] >= target


def hammer(instances: list[Optimizer], store: VersionedStore, *, writes: int, by_tag: bool) -> list[str]:
    """Write and invalidate on instance 0 while readers call every instance; return the violations."""
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
    rng = random.Random(1)
    try:
        for _ in range(writes):
            # Let the readers fill the cache between writes, so reads race invalidations of cached data.
            with reads:
                target = completed[0] + 10
                assert reads.wait_for(functools.partial(_reached, completed, target), timeout=30), (
                    "readers stalled"
                )
            key = rng.choice(KEYS)
            store.versions[key] += 1
            if by_tag:
                instances[0].invalidate_tag(f"student:{key.split('/')[0]}")
            else:
                instances[0].invalidate(key)
            store.floor[key] = store.versions[key]
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


@pytest.mark.integration
@pytest.mark.parametrize("by_tag", [False, True], ids=["by-key", "by-tag"])
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
        violations = hammer(instances, store, writes=60, by_tag=by_tag)
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
