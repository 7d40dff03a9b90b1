"""The Redis tier against the real Redis: shared values, invalidations seen by every instance before
the invalidating call returns, fencing of in-flight loads, reconnects, and degrading without Redis."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry

from optimizer import Optimizer, OptimizerConfig, RedisCache
from tests.optimizer.conftest import CountingBackend, FakeClock
from tests.support import free_port, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    name = f"rgtest-{uuid.uuid4().hex[:10]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{name}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def make_instance(redis_url: str, namespace: str) -> Iterator[Callable[..., Optimizer]]:
    """Build an 'app instance': an Optimizer over a RedisCache in the test's namespace."""
    built: list[Optimizer] = []

    def make(backend: Callable[[str], Any], **kwargs: Any) -> Optimizer:
        cache = RedisCache(redis_url, namespace=namespace)
        kwargs.setdefault("config", OptimizerConfig(ttl_s=60, jitter=0))
        opt = Optimizer(
            backend, name="get_all_exam_attempts", cache=cache, registry=CollectorRegistry(), **kwargs
        )
        built.append(opt)
        assert cache.wait_subscribed(), "invalidation listener did not subscribe"
        return opt

    yield make
    for opt in built:
        opt.close()


def test_two_instances_share_values(make_instance):
    backend = CountingBackend()
    a, b = make_instance(backend), make_instance(backend)
    assert a("student:42") == {"key": "student:42", "version": 0}
    assert b("student:42") == {"key": "student:42", "version": 0}
    assert backend.calls == ["student:42"]
    assert b.cache.contains("v1:student:42")  # now held locally by b too


def test_an_invalidation_on_one_instance_is_seen_by_the_other_before_it_returns(make_instance):
    backend = CountingBackend()
    a, b = make_instance(backend), make_instance(backend)
    a("student:42")
    b("student:42")
    assert b.cache.contains("v1:student:42")

    backend.version = 1  # the write
    a.invalidate("student:42")

    assert not b.cache.contains("v1:student:42")
    assert b("student:42")["version"] == 1
    assert a("student:42")["version"] == 1
    assert len(backend.calls) == 2


def test_a_tag_invalidation_reaches_every_instance(make_instance):
    backend = CountingBackend()
    tags = lambda key: [f"student:{key.split('/')[0]}"]  # noqa: E731
    a, b = make_instance(backend, tags=tags), make_instance(backend, tags=tags)
    for key in ("42/s1", "42/s2", "7/s1"):
        a(key)
        b(key)
    backend.version = 1

    b.invalidate_tag("student:42")

    assert not a.cache.contains("v1:42/s1") and not a.cache.contains("v1:42/s2")
    assert a.cache.contains("v1:7/s1")
    assert a("42/s1")["version"] == 1 and a("42/s2")["version"] == 1
    assert b("42/s1")["version"] == 1
    assert a("7/s1")["version"] == 0


def test_a_fetch_in_flight_on_another_instance_never_lands_after_an_invalidation(make_instance):
    backend = CountingBackend(hold=True)
    a, b = make_instance(backend), make_instance(backend)
    early: list[dict] = []
    reader = threading.Thread(target=lambda: early.append(b("student:42")))
    reader.start()
    wait_until(lambda: backend.in_flight == 1, what="b's fetch reached the backend")

    backend.version = 1
    a.invalidate("student:42")
    backend.release.set()
    reader.join(10)

    assert early[0]["version"] == 0  # b's caller asked before the write
    assert not b.cache.contains("v1:student:42")
    assert a("student:42")["version"] == 1  # nothing stale was shared through Redis either
    assert b("student:42")["version"] == 1


def test_a_reconnect_flushes_the_local_copy(make_instance, redis_url):
    backend = CountingBackend()
    a = make_instance(backend)
    a("k")
    cache = a.cache
    assert isinstance(cache, RedisCache) and cache.contains("v1:k")
    subscriptions = cache.subscriptions

    admin = redis.Redis.from_url(redis_url)
    try:
        # Kill exactly this instance's subscriber connection: messages sent meanwhile would be lost.
        victims = [c for c in admin.client_list() if c.get("name") == cache.client_name and int(c["sub"]) > 0]
        assert len(victims) == 1
        admin.client_kill_filter(_id=victims[0]["id"])
    finally:
        admin.close()

    wait_until(lambda: cache.subscriptions > subscriptions, what="the listener resubscribed")
    assert not cache.contains("v1:k")
    assert a("k") == {"key": "k", "version": 0}  # the shared value is still there
    assert backend.calls == ["k"]


def test_without_redis_the_layer_degrades_to_local_caching():
    backend = CountingBackend()
    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", namespace="down", retry_after_s=60)
    opt = Optimizer(backend, name="fn", cache=cache, registry=CollectorRegistry(), clock=FakeClock())
    try:
        assert opt("k") == {"key": "k", "version": 0}
        assert opt("k") == {"key": "k", "version": 0}
        assert backend.calls == ["k"]
        assert cache.degraded
        backend.version = 1
        opt.invalidate("k")  # does not raise
        assert opt("k")["version"] == 1
    finally:
        opt.close()


def test_values_that_are_not_json_stay_local(make_instance):
    a = make_instance(lambda key: {1, 2, 3})
    b = make_instance(lambda key: {4})
    assert a("k") == {1, 2, 3}
    assert b("k") == {4}
