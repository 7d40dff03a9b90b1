"""Fixtures of the flag service tests: an in-process app on a throwaway SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flags.app import create_app
from flags.settings import Settings
from flags.startup import prepare

ADMIN = "admin-test-token"
CLIENT = "client-test-token"


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'flags.db'}",
        "admin_token": ADMIN,
        "client_token": CLIENT,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    prepare(settings)
    app = create_app(settings)
    yield app
    app.extensions["rollguard"].db.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def admin(actor: str | None = None, **extra: str) -> dict[str, str]:
    headers = {"Authorization": ADMIN, **extra}
    if actor:
        headers["X-Rollguard-Actor"] = actor
    return headers


def sdk(**extra: str) -> dict[str, str]:
    return {"Authorization": CLIENT, **extra}


def create_flag(client: FlaskClient, key: str = "checkout", **fields: Any) -> dict[str, Any]:
    response = client.post("/api/admin/flags", json={"key": key, **fields}, headers=admin())
    assert response.status_code == 201, response.json
    body: dict[str, Any] = response.get_json()
    return body
