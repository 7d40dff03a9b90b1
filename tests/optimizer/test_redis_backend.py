"""The Redis tier against the real Redis: shared values, invalidations seen by every instance before
the invalidating call returns, fencing of in-flight loads, reconnects, and degrading without Redis."""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlparse

import pytest
import redis
from prometheus_client import CollectorRegistry

from optimizer import InvalidationUnconfirmed, Optimizer, OptimizerConfig, RedisCache
from rollguard import free_port
from tests.optimizer.conftest import CountingBackend, FakeClock
from tests.support import wait_until

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


def test_without_redis_calls_read_the_backend_and_invalidation_is_unconfirmed():
    # Unsubscribed, an instance cannot hear other instances' invalidations: a local copy could be stale.
    backend = CountingBackend()
    url = f"redis://127.0.0.1:{free_port()}/0"
    cache = RedisCache(url, namespace="down", retry_after_s=60, confirm_timeout_s=0.3)
    opt = Optimizer(backend, name="fn", cache=cache, registry=CollectorRegistry(), clock=FakeClock())
    try:
        assert opt("k") == {"key": "k", "version": 0}
        assert opt("k") == {"key": "k", "version": 0}
        assert backend.calls == ["k", "k"]
        assert cache.degraded
        backend.version = 1
        with pytest.raises(InvalidationUnconfirmed):
            opt.invalidate("k")
        assert cache.pending == 1
        assert opt("k")["version"] == 1
    finally:
        opt.close()


def test_values_that_are_not_json_stay_local(make_instance):
    a = make_instance(lambda key: {1, 2, 3})
    b = make_instance(lambda key: {4})
    assert a("k") == {1, 2, 3}
    assert b("k") == {4}


class TcpProxy:
    """A TCP forwarder in front of the real Redis that the test can cut and restore: a network outage."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server: socket.socket | None = None
        self.start()

    def start(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(16)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def cut(self) -> None:
        """Close the listener and every forwarded connection."""
        with self._lock:
            sockets, self._connections = self._connections, []
            if self._server is not None:
                sockets.append(self._server)
                self._server = None
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            with self._lock:
                self._connections += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def test_during_an_outage_calls_read_the_backend_and_unconfirmed_invalidations_are_replayed(
    redis_url, namespace
):
    parsed = urlparse(redis_url)
    proxy = TcpProxy((parsed.hostname or "127.0.0.1", parsed.port or 6379))
    backend = CountingBackend()
    config = OptimizerConfig(ttl_s=600, jitter=0)
    through_proxy = RedisCache(
        f"redis://127.0.0.1:{proxy.port}{parsed.path or '/0'}",
        namespace=namespace,
        retry_after_s=0.2,
        confirm_timeout_s=0.5,
    )
    direct = RedisCache(redis_url, namespace=namespace)
    a = Optimizer(backend, name="fn", cache=through_proxy, config=config, registry=CollectorRegistry())
    b = Optimizer(backend, name="fn", cache=direct, config=config, registry=CollectorRegistry())
    try:
        assert through_proxy.wait_subscribed() and direct.wait_subscribed()
        a("k")
        assert backend.calls == ["k"]

        proxy.cut()
        wait_until(lambda: through_proxy.degraded, what="the outage noticed")
        assert a("k") == {"key": "k", "version": 0}  # read from the backend, no error
        assert backend.calls == ["k", "k"]
        backend.version = 1
        b.invalidate("k")  # a cannot hear it: its subscription is down
        assert a("k")["version"] == 1  # and so a serves no local copy while unsubscribed
        with pytest.raises(InvalidationUnconfirmed):
            a.invalidate("other")
        assert through_proxy.pending == 1

        subscriptions = through_proxy.subscriptions
        proxy.start()
        wait_until(lambda: through_proxy.subscriptions > subscriptions, what="a resubscribed")
        wait_until(lambda: through_proxy.pending == 0, what="the unconfirmed invalidation replayed")
        assert a("k")["version"] == 1
    finally:
        a.close()
        b.close()
        proxy.cut()
