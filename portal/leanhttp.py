"""The load generator's HTTP client: one keep-alive connection per user, each request reported to locust.

locust's `FastHttpSession` wraps a geventhttpclient connection in what a
general load test needs: absolute URLs built and parsed again per request, a
cookie jar, redirects, authentication, a response object and a context
manager to mark it failed. The traffic generator needs none of it: one host,
paths it builds itself, JSON bodies, and a request is failed when its status
is not the one expected. Without that wrapper, and with bodies parsed and
written by orjson, a request costs 0.57 of the CPU (`bench/loadgen_cost.py`:
0.73 on another VM before orjson), CPU the load generator takes from the
portal it measures on the same two cores. `LeanSession` keeps the geventhttpclient
connection and reports every request to locust's `request` event as
`FastHttpSession` does, so locust's statistics (the run's p95) are computed
as before.

Imported only by `portal.traffic`, in the load generator's own process (gevent).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import orjson
from geventhttpclient import HTTPClient
from geventhttpclient.url import URL
from locust.event import EventHook

_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


@dataclass(frozen=True)
class Reply:
    """A response read whole: its status (0 when the request failed before one came), its body,
    when the request started (`time.monotonic`) and how long it took to the body's last byte."""

    status: int
    body: bytes
    started: float
    elapsed_s: float

    def json(self) -> Any:
        # orjson: the load generator parses every page it gets, on the cores the portal runs on.
        return orjson.loads(self.body)


class StatusError(Exception):
    """A response with another status than the request expected (reported to locust as its failure)."""


class LeanSession:
    """One connection to `base_url`, opened on the first request and kept alive; not shared between greenlets."""

    def __init__(
        self, base_url: str, request_event: EventHook, *, connection_timeout: float, network_timeout: float
    ) -> None:
        url = URL(base_url)
        self._client = HTTPClient(
            url.host,
            url.port,
            concurrency=1,
            connection_timeout=connection_timeout,
            network_timeout=network_timeout,
        )
        self._fire = cast("Callable[..., None]", request_event.fire)

    def get(self, path: str, *, name: str, expect: int = 200) -> Reply:
        return self._request("GET", path, name=name, expect=expect)

    def post_json(self, path: str, body: Any, *, name: str, expect: int) -> Reply:
        return self._request("POST", path, name=name, expect=expect, body=orjson.dumps(body))

    def close(self) -> None:
        self._client.close()

    def _request(self, method: str, path: str, *, name: str, expect: int, body: bytes | None = None) -> Reply:
        start_time = time.time()
        started = time.monotonic()
        exception: Exception | None = None
        try:
            with self._client.request(
                method, path, body=body, headers=_JSON_HEADERS if body else None
            ) as response:
                status, content = response.status_code, response.read()
        except Exception as exc:  # noqa: BLE001 - a failed request is reported and counted, as locust does
            status, content, exception = 0, b"", exc
        reply = Reply(status, content, started, time.monotonic() - started)
        if exception is None and status != expect:
            exception = StatusError(f"HTTP {status}")
        self._fire(
            request_type=method,
            name=name,
            response_time=reply.elapsed_s * 1000,
            response_length=len(reply.body),
            response=None,
            context={},
            exception=exception,
            start_time=start_time,
            url=path,
        )
        return reply
