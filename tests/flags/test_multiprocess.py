"""Several flag service processes on one PostgreSQL database stay consistent."""

from __future__ import annotations

import secrets
import threading
from pathlib import Path

import httpx
import pytest

from flags.client import FlagsClient, VersionConflict
from rollguard import ROLLGUARD, Child, free_port
from tests.support import start_process, wait_until

pytestmark = pytest.mark.integration


def _start_many(tmp_path: Path, database_url: str, admin: str, client: str, count: int) -> list[Child]:
    env = {
        "ROLLGUARD_DATABASE_URL": database_url,
        "ROLLGUARD_ADMIN_TOKEN": admin,
        "ROLLGUARD_CLIENT_TOKEN": client,
    }
    started: list[Child] = []
    errors: list[BaseException] = []

    def start() -> None:
        port = free_port()
        try:
            started.append(
                start_process(
                    [*ROLLGUARD, "flags", "serve", "--port", str(port), "--workers", "1"],
                    ready_url=f"http://127.0.0.1:{port}/readyz",
                    log_path=tmp_path / f"flags-{port}.log",
                    env=env,
                )
            )
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        for process in started:
            process.stop()
        raise errors[0]
    return started


def _url(process: Child) -> str:
    port = process.log_path.stem.split("-")[-1]
    return f"http://127.0.0.1:{port}"


def _served(url: str, token: str, key: str) -> dict | None:
    body = httpx.get(f"{url}/api/client/features", headers={"Authorization": token}).json()
    return next((f for f in body["features"] if f["name"] == key), None)


def test_processes_share_tokens_changes_and_versions(tmp_path: Path, fresh_postgres_url: str) -> None:
    admin, client = "admin-" + secrets.token_hex(8), "client-" + secrets.token_hex(8)
    first, second = _start_many(tmp_path, fresh_postgres_url, admin, client, 2)
    try:
        a, b = FlagsClient(_url(first), admin, actor="a"), FlagsClient(_url(second), admin, actor="b")
        names = sorted(t.name for t in a.list_tokens())
        assert names == ["bootstrap-admin", "bootstrap-client"]

        a.create_flag("opt", enabled=True, rollout=10)
        wait_until(
            lambda: _served(_url(second), client, "opt") is not None, timeout=5, what="B serves A's flag"
        )
        b.kill("opt", reason="breach")
        wait_until(
            lambda: _served(_url(first), client, "opt")["enabled"] is False,
            timeout=5,
            what="A serves B's kill",
        )

        version = a.get_flag("opt").version
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def patch(api: FlagsClient, text: str) -> None:
            barrier.wait()
            try:
                api.update_flag("opt", {"description": text}, version=version)
                outcomes.append("ok")
            except VersionConflict:
                outcomes.append("conflict")

        racers = [threading.Thread(target=patch, args=(api, api.base_url)) for api in (a, b)]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join()
        assert sorted(outcomes) == ["conflict", "ok"]
        assert b.get_flag("opt").version == version + 1
        a.close()
        b.close()
    finally:
        first.stop()
        second.stop()

    [restarted] = _start_many(tmp_path, fresh_postgres_url, admin, client, 1)
    try:
        with FlagsClient(_url(restarted), admin) as again:
            assert sorted(t.name for t in again.list_tokens()) == ["bootstrap-admin", "bootstrap-client"]
            assert again.get_flag("opt").enabled is False
    finally:
        restarted.stop()
