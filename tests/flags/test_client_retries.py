"""The admin client repeats a request whose answer was lost only when repeating it is safe.

The flag service runs in process behind `httpx.WSGITransport`; a transport in
front of it lets the first matching request reach the service, then loses the
answer as a read timeout would.
"""

from __future__ import annotations

import httpx
import pytest
from flask import Flask

from flags.client import FlagsClient, FlagsUnavailable
from tests.flags.conftest import ADMIN


class LosesFirstAnswer(httpx.BaseTransport):
    """Forward every request to the app; drop the answer to the first one whose method and path match."""

    def __init__(self, app: Flask, method: str, path: str) -> None:
        self._inner = httpx.WSGITransport(app=app)
        self._target = (method, path)
        self.sent: list[tuple[str, str]] = []
        self._lost = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        self.sent.append((request.method, request.url.path))
        if not self._lost and (request.method, request.url.path) == self._target:
            self._lost = True
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return response


def client_over(transport: LosesFirstAnswer) -> FlagsClient:
    return FlagsClient("http://flags.test", ADMIN, transport=transport, backoff_s=0)


def test_a_create_whose_answer_was_lost_is_not_sent_again(app: Flask) -> None:
    transport = LosesFirstAnswer(app, "POST", "/api/admin/flags")
    client = client_over(transport)

    with pytest.raises(FlagsUnavailable):
        client.create_flag("lost-answer", rollout=10)

    assert transport.sent.count(("POST", "/api/admin/flags")) == 1
    assert client.get_flag("lost-answer").rollout == 10  # it was created, once


def test_a_kill_whose_answer_was_lost_is_sent_again(app: Flask) -> None:
    setup = client_over(LosesFirstAnswer(app, "-", "-"))
    setup.create_flag("kill-me", rollout=50, enabled=True)
    transport = LosesFirstAnswer(app, "POST", "/api/admin/flags/kill-me/kill")

    flag = client_over(transport).kill("kill-me", reason="fault on the optimized path")

    assert transport.sent.count(("POST", "/api/admin/flags/kill-me/kill")) == 2
    assert flag.enabled is False
    kills = [e for e in setup.events(flag="kill-me") if e.action == "kill"]
    assert len(kills) == 1  # the repeat changed nothing


def test_a_read_whose_answer_was_lost_is_sent_again(app: Flask) -> None:
    transport = LosesFirstAnswer(app, "GET", "/api/admin/flags")

    assert client_over(transport).list_flags() == []
    assert transport.sent.count(("GET", "/api/admin/flags")) == 2
