"""`PeerCache` under `RequestScope`: a request asks whether its worker is caught up once, at its first read."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import pytest
from werkzeug.test import create_environ, run_wsgi_app

from optimizer import Entry, InProcessCache, OptimizerConfig
from portal.peercache import PeerCache, RequestScope

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


def _peer_cache(answers: list[bool]) -> tuple[PeerCache, list[bool]]:
    """A serving PeerCache over a real in-process cache holding "k"; `answers` feeds its caught_up."""
    inner = InProcessCache(OptimizerConfig())
    cache = PeerCache(inner)
    cache.attach(name="fn", config=OptimizerConfig(), clock=time.monotonic)
    cache.listening(True)
    cache.put("k", Entry("v", fresh_until=time.monotonic() + 60, stale_until=time.monotonic() + 60, size=1))
    asked: list[bool] = []

    def caught_up() -> bool:
        asked.append(answers[len(asked) % len(answers)])
        return asked[-1]

    cache.watch(caught_up)
    return cache, asked


def _request(app: WSGIApplication) -> None:
    run_wsgi_app(app, create_environ())


def _reading_app(cache: PeerCache, reads: int, seen: list[object]) -> WSGIApplication:
    def app(_environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        read = cache.reader()
        seen.extend(read("k") for _ in range(reads))
        start_response("200 OK", [])
        return [b""]

    return app


def test_a_request_asks_once_and_its_reads_share_the_answer() -> None:
    cache, asked = _peer_cache([True, False])
    seen: list[object] = []
    app = RequestScope(_reading_app(cache, 3, seen), cache)
    _request(app)
    _request(app)
    assert asked == [True, False]
    served = [entry is not None for entry in seen]
    assert served == [True, True, True, False, False, False]


def test_reads_outside_a_request_ask_every_time() -> None:
    cache, asked = _peer_cache([True])
    for _ in range(3):
        assert cache.get("k") is not None
    assert len(asked) == 3


def test_a_request_that_fails_still_ends() -> None:
    cache, asked = _peer_cache([True])

    def failing(_environ: WSGIEnvironment, _start_response: StartResponse) -> Iterable[bytes]:
        assert cache.get("k") is not None
        raise RuntimeError("the view failed")

    with pytest.raises(RuntimeError):
        _request(RequestScope(failing, cache))
    cache.get("k")
    cache.get("k")
    assert len(asked) == 3  # once in the request, then once per read outside it
