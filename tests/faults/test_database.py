"""A lost PostgreSQL connection: acknowledged writes survive, failures say 503, the service recovers.

The flag service runs as `rollguard flags serve` (gunicorn) on a private
PostgreSQL cluster that the tests really restart and whose backends they
terminate while clients write and read. In-process, a backend terminated just
as one statement is about to run shows what each kind of request does with a
connection lost mid-request: a read or a kill runs again on a fresh
connection, a create answers 503 and stores nothing.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask

from flags.app import create_app
from flags.startup import prepare
from tests.conftest import LiveFlagService, start_flag_service
from tests.faults.components import ConnectionCutter, PrivatePostgres
from tests.flags.conftest import admin, create_flag, make_settings
from tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def service(tmp_path: Path, private_postgres: PrivatePostgres) -> Any:
    live = start_flag_service(tmp_path, database_url=private_postgres.url)
    yield live
    live.process.terminate()


def _headers(service: LiveFlagService) -> dict[str, str]:
    return {"Authorization": service.admin_token}


def _create(http: httpx.Client, service: LiveFlagService, key: str) -> httpx.Response:
    return http.post(f"{service.url}/api/admin/flags", json={"key": key}, headers=_headers(service))


def _stored(service: LiveFlagService) -> tuple[set[str], Counter[str]]:
    with httpx.Client(timeout=10) as http:
        flags = http.get(f"{service.url}/api/admin/flags", headers=_headers(service)).json()["flags"]
        events = http.get(
            f"{service.url}/api/admin/events", params={"limit": 1000}, headers=_headers(service)
        ).json()["events"]
    creates = Counter(event["flag"] for event in events if event["action"] == "create")
    return {flag["key"] for flag in flags}, creates


def _creates_during(service: LiveFlagService, fault: Any, *, count: int) -> list[tuple[str, httpx.Response]]:
    """Send `count` creates from 16 threads while `fault()` runs every 0.1 s; every (key, response)."""
    stop = threading.Event()

    def keep_breaking() -> None:
        # Every 0.1 s: often enough to cut many transactions, with room between cuts for writes to
        # land even on a busy machine (a tight loop there cut every single one).
        while not stop.wait(0.1):
            fault()

    breaker = threading.Thread(target=keep_breaking)
    breaker.start()
    try:
        with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=16)) as http:
            keys = [f"write-{i}" for i in range(count)]
            with ThreadPoolExecutor(16) as pool:
                responses = list(pool.map(lambda key: _create(http, service, key), keys))
    finally:
        stop.set()
        breaker.join()
    return list(zip(keys, responses, strict=True))


def _assert_honest(results: list[tuple[str, httpx.Response]], service: LiveFlagService) -> Counter[int]:
    statuses = Counter(response.status_code for _, response in results)
    assert set(statuses) <= {201, 503}, statuses
    for _, response in results:
        if response.status_code == 503:
            assert response.headers["Retry-After"] == "1"
            assert response.json()["error"]["code"] == "database_unavailable"
    stored, creates = _stored(service)
    acknowledged = {key for key, response in results if response.status_code == 201}
    assert acknowledged <= stored, f"acknowledged but lost: {sorted(acknowledged - stored)}"
    assert all(creates[key] == 1 for key in stored), "every stored flag has exactly one create event"
    return statuses


def test_backend_terminations_lose_no_acknowledged_write(
    service: LiveFlagService, private_postgres: PrivatePostgres
) -> None:
    terminated: list[int] = []
    results = _creates_during(
        service, lambda: terminated.append(private_postgres.terminate_backends()), count=200
    )
    assert sum(terminated) > 0, "the test must really have cut connections"
    statuses = _assert_honest(results, service)
    assert statuses[201] > 0


def test_postgres_restart_loses_no_acknowledged_write_and_service_recovers(
    service: LiveFlagService, private_postgres: PrivatePostgres
) -> None:
    restarts: list[int] = []

    def restart_twice() -> None:
        if len(restarts) < 2:
            private_postgres.restart()
            restarts.append(1)
        else:
            threading.Event().wait(0.05)

    results = _creates_during(service, restart_twice, count=200)
    assert len(restarts) == 2
    _assert_honest(results, service)
    # The same processes serve again, without a restart of the flag service.
    assert service.process.proc.poll() is None
    with httpx.Client(timeout=10) as http:
        after = _create(http, service, "after-restart")
        assert after.status_code == 201, after.text
        read = http.get(f"{service.url}/api/admin/flags/after-restart", headers=_headers(service))
        assert read.status_code == 200


def test_reads_during_terminations_are_answered_or_503(
    service: LiveFlagService, private_postgres: PrivatePostgres
) -> None:
    with httpx.Client(timeout=10) as http:
        assert _create(http, service, "read-me").status_code == 201
    stop = threading.Event()
    statuses: Counter[int] = Counter()

    def read_loop() -> None:
        with httpx.Client(timeout=10) as http:
            while not stop.is_set():
                response = http.get(f"{service.url}/api/admin/flags/read-me", headers=_headers(service))
                statuses[response.status_code] += 1

    readers = [threading.Thread(target=read_loop) for _ in range(4)]
    for reader in readers:
        reader.start()
    try:
        for _ in range(30):
            private_postgres.terminate_backends()
        wait_until(lambda: sum(statuses.values()) >= 200, timeout=60, what="200 reads")
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[200] > 0


@pytest.fixture
def pg_app(tmp_path: Path, fresh_postgres_url: str) -> Iterator[Flask]:
    settings = make_settings(tmp_path, database_url=fresh_postgres_url)
    prepare(settings)
    app = create_app(settings)
    yield app
    app.extensions["rollguard"].db.dispose()


@contextmanager
def _cut_once(app: Flask, statement: str) -> Iterator[ConnectionCutter]:
    cutter = ConnectionCutter(app.extensions["rollguard"].db.engine, statement)
    try:
        yield cutter
    finally:
        cutter.close()


def test_a_read_cut_mid_request_is_run_again_on_a_fresh_connection(pg_app: Flask) -> None:
    client = pg_app.test_client()
    create_flag(client, "opt", enabled=True, rollout=10)
    with _cut_once(pg_app, "FROM flags") as cutter:
        response = client.get("/api/admin/flags/opt", headers=admin())
    assert cutter.cut == 1
    assert response.status_code == 200, response.json
    assert response.json["key"] == "opt"
    assert cutter.runs == 2, "the statement cut ran once more"


def test_a_create_cut_mid_request_is_a_503_and_stores_nothing(pg_app: Flask) -> None:
    client = pg_app.test_client()
    with _cut_once(pg_app, "INSERT INTO flags") as cutter:
        response = client.post("/api/admin/flags", json={"key": "opt"}, headers=admin())
    assert cutter.cut == 1
    assert response.status_code == 503, response.json
    assert response.headers["Retry-After"] == "1"
    assert response.json["error"]["code"] == "database_unavailable"
    assert client.get("/api/admin/flags/opt", headers=admin()).status_code == 404
    assert client.get("/api/admin/events", headers=admin()).json["events"] == []


def test_a_kill_cut_mid_request_is_run_again_and_recorded_once(pg_app: Flask) -> None:
    client = pg_app.test_client()
    create_flag(client, "opt", enabled=True, rollout=10)
    with _cut_once(pg_app, "UPDATE flags") as cutter:
        response = client.post("/api/admin/flags/opt/kill", json={"reason": "fault"}, headers=admin())
    assert cutter.cut == 1
    assert response.status_code == 200, response.json
    assert cutter.runs == 2, "the statement cut ran once more"
    assert client.get("/api/admin/flags/opt", headers=admin()).json["enabled"] is False
    events = client.get("/api/admin/events", headers=admin(), query_string={"flag": "opt"}).json["events"]
    assert [event["action"] for event in events].count("kill") == 1
