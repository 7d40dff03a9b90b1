"""GET /api/client/streaming against `rollguard flags serve`: the wire format, the official SDK, outages.

Every test runs the real service (gunicorn with its gevent workers) and reads
the stream either with httpx or with the official Python SDK in streaming mode.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from UnleashClient import UnleashClient

from flags.client import FlagsClient
from flags.db import Database, make_engine, migrate
from flags.notices import PostgresNotices
from rollguard import ROLLGUARD, Child
from tests.conftest import LiveFlagService, start_flag_service
from tests.support import start_process, wait_until

STREAMING = {"type": "streaming"}
USER = {"userId": "student-1"}


@dataclass
class ServerSentEvent:
    kind: str
    data: dict[str, Any]


def _events(response: httpx.Response) -> Iterator[ServerSentEvent]:
    """The events of an open stream, comments skipped; blocks until each arrives."""
    kind, data = "", ""
    for line in response.iter_lines():
        if line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
        elif not line and kind:
            yield ServerSentEvent(kind, json.loads(data))
            kind, data = "", ""


def _stream(service: LiveFlagService, token: str | None) -> Any:
    headers = {"Accept": "text/event-stream", **({"Authorization": token} if token else {})}
    return httpx.stream(
        "GET", f"{service.url}/api/client/streaming", headers=headers, timeout=httpx.Timeout(10.0)
    )


def test_stream_hydrates_then_sends_each_change_as_a_delta(flag_service: LiveFlagService) -> None:
    with flag_service.admin("test") as admin, _stream(flag_service, flag_service.client_token) as response:
        admin.create_flag("opt", enabled=True, rollout=100)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = _events(response)

        connected = next(events)
        assert connected.kind == "unleash-connected"
        [hydration] = connected.data["events"]
        assert hydration["type"] == "hydration"
        assert "segments" in hydration

        # The flag may have been created before or after the stream opened.
        if not any(feature["name"] == "opt" for feature in hydration["features"]):
            created = next(events)
            assert created.kind == "unleash-updated"
            assert [e["feature"]["name"] for e in created.data["events"]] == ["opt"]

        admin.kill("opt", reason="guardrail breached")
        killed = next(events)
        assert killed.kind == "unleash-updated"
        [event] = killed.data["events"]
        assert event["type"] == "feature-updated"
        assert (event["feature"]["name"], event["feature"]["enabled"]) == ("opt", False)

        admin.delete_flag("opt")
        removed = next(events)
        assert removed.data["events"][0]["type"] == "feature-removed"
        assert removed.data["events"][0]["featureName"] == "opt"


@pytest.mark.parametrize("token", [None, "not-a-token"], ids=["no-token", "unknown-token"])
def test_stream_requires_a_client_token(flag_service: LiveFlagService, token: str | None) -> None:
    with _stream(flag_service, token) as response:
        assert response.status_code == 401
        response.read()
        assert response.json()["error"]["code"] == "unauthenticated"


def test_revoked_token_ends_its_stream(tmp_path: Path) -> None:
    service = start_flag_service(tmp_path, extra_env={"ROLLGUARD_FLAGS_STREAM_HEARTBEAT_S": "0.2"})
    try:
        with service.admin() as admin:
            token = admin.create_token("short-lived", "client")
            assert token.secret is not None
            with _stream(service, token.secret) as response:
                lines = response.iter_lines()
                assert next(lines) == "event: unleash-connected"
                admin.revoke_token(token.id)
                # The server ends the stream at a heartbeat; until then heartbeats keep arriving.
                deadline = time.monotonic() + 20
                for _line in lines:
                    assert time.monotonic() < deadline, "the stream outlived its revoked token"
    finally:
        service.process.terminate()


def test_streams_beyond_the_limit_get_429(tmp_path: Path) -> None:
    service = start_flag_service(
        tmp_path,
        extra_env={
            "ROLLGUARD_FLAGS_MAX_STREAMS": "1",
            "ROLLGUARD_FLAGS_WORKERS": "1",
            # A closed stream is noticed at its next write, so write often.
            "ROLLGUARD_FLAGS_STREAM_HEARTBEAT_S": "0.2",
        },
    )
    try:
        with _stream(service, service.client_token) as first:
            assert first.status_code == 200
            with _stream(service, service.client_token) as second:
                assert second.status_code == 429
                assert second.headers["Retry-After"]
        # The slot is given back when the first stream closes.
        wait_until(lambda: _status_of_new_stream(service) == 200, what="a free stream slot")
    finally:
        service.process.terminate()


def _status_of_new_stream(service: LiveFlagService) -> int:
    with _stream(service, service.client_token) as response:
        return response.status_code


def _streaming_sdk(service: LiveFlagService, name: str, cache_dir: Path) -> UnleashClient:
    return service.sdk(name, cache_dir, disable_registration=True, experimental_mode=STREAMING)


def test_official_sdk_in_streaming_mode_sees_a_kill(flag_service: LiveFlagService, tmp_path: Path) -> None:
    sdk = _streaming_sdk(flag_service, "stream-kill", tmp_path / "cache")
    try:
        with flag_service.admin("test") as admin:
            admin.create_flag("opt", enabled=True, rollout=100, payload={"ttl_s": 30})
            sdk.initialize_client()
            wait_until(lambda: sdk.is_enabled("opt", USER), what="flag on in the streaming SDK")
            assert json.loads(sdk.get_variant("opt", USER)["payload"]["value"]) == {"ttl_s": 30}

            admin.kill("opt", reason="guardrail breached")
            wait_until(lambda: not sdk.is_enabled("opt", USER), what="kill seen through the stream")
            admin.resume("opt", reason="fixed")
            wait_until(lambda: sdk.is_enabled("opt", USER), what="resume seen through the stream")
    finally:
        sdk.destroy()


@pytest.mark.integration
def test_change_through_a_second_process_reaches_a_stream_on_the_first(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    first = start_flag_service(tmp_path, database_url=fresh_postgres_url)
    second: LiveFlagService | None = None
    sdk = _streaming_sdk(first, "stream-pg", tmp_path / "cache")
    try:
        second = start_flag_service(
            tmp_path,
            database_url=fresh_postgres_url,
            extra_env={
                "ROLLGUARD_ADMIN_TOKEN": first.admin_token,
                "ROLLGUARD_CLIENT_TOKEN": first.client_token,
            },
        )
        with FlagsClient(second.url, first.admin_token, actor="test") as admin:
            admin.create_flag("opt", enabled=True, rollout=100)
            sdk.initialize_client()
            wait_until(
                lambda: sdk.is_enabled("opt", USER), what="flag on in the SDK streaming from the first"
            )
            admin.kill("opt", reason="killed through the second process")
            wait_until(lambda: not sdk.is_enabled("opt", USER), what="kill through the second process")
    finally:
        sdk.destroy()
        first.process.terminate()
        if second is not None:
            second.process.terminate()


@pytest.mark.integration
def test_postgres_write_notifies_every_listener(fresh_postgres_url: str) -> None:
    engine = make_engine(fresh_postgres_url)
    migrate(engine)
    engine.dispose()
    db = Database(fresh_postgres_url)
    listeners = [PostgresNotices(fresh_postgres_url), PostgresNotices(fresh_postgres_url)]
    try:
        # The first wait connects and reports that nothing was listening before.
        assert all(listener.wait(0) for listener in listeners)
        assert not any(listener.wait(0.2) for listener in listeners)

        writer = threading.Thread(target=_write_once, args=(db,))
        writer.start()
        try:
            assert all(listener.wait(10) for listener in listeners)
        finally:
            writer.join()
        assert not any(listener.wait(0.2) for listener in listeners)
    finally:
        for listener in listeners:
            listener.close()
        db.dispose()


def _write_once(db: Database) -> None:
    with db.write():
        pass


def _restart_on_port(service: LiveFlagService, port: int, log_path: Path) -> Child:
    env = {
        "ROLLGUARD_ADMIN_TOKEN": service.admin_token,
        "ROLLGUARD_CLIENT_TOKEN": service.client_token,
        "ROLLGUARD_DATABASE_URL": service.database_url,
    }
    return start_process(
        [*ROLLGUARD, "flags", "serve", "--host", "127.0.0.1", "--port", str(port)],
        ready_url=f"http://127.0.0.1:{port}/readyz",
        log_path=log_path,
        env=env,
    )


def test_sdk_keeps_its_flags_while_the_service_is_down_and_reconnects(tmp_path: Path) -> None:
    service = start_flag_service(tmp_path)
    port = int(service.url.rsplit(":", 1)[1])
    restarted: Child | None = None
    sdk = _streaming_sdk(service, "stream-outage", tmp_path / "cache")
    try:
        with service.admin("test") as admin:
            admin.create_flag("opt", enabled=True, rollout=100)
        sdk.initialize_client()
        wait_until(lambda: sdk.is_enabled("opt", USER), what="flag on in the streaming SDK")

        service.process.stop()
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{service.url}/healthz", timeout=2)
        assert sdk.is_enabled("opt", USER), "the SDK must keep serving what it had"

        restarted = _restart_on_port(service, port, tmp_path / "flags-restarted.log")
        with service.admin("test") as admin:
            admin.kill("opt", reason="changed after the restart")
        wait_until(lambda: not sdk.is_enabled("opt", USER), timeout=60, what="the SDK reconnected")
    finally:
        sdk.destroy()
        service.process.terminate()
        if restarted is not None:
            restarted.terminate()


def test_polling_sdk_still_works_beside_streams(flag_service: LiveFlagService, tmp_path: Path) -> None:
    streaming = _streaming_sdk(flag_service, "streams", tmp_path / "s")
    polling = flag_service.sdk("polls", tmp_path / "p", disable_registration=True)
    try:
        with flag_service.admin("test") as admin:
            admin.create_flag("opt", enabled=True, rollout=100)
            streaming.initialize_client()
            polling.initialize_client()
            wait_until(
                lambda: streaming.is_enabled("opt", USER) and polling.is_enabled("opt", USER), what="both on"
            )
            admin.kill("opt", reason="off for both")
            wait_until(
                lambda: not streaming.is_enabled("opt", USER) and not polling.is_enabled("opt", USER),
                what="both off",
            )
    finally:
        streaming.destroy()
        polling.destroy()
