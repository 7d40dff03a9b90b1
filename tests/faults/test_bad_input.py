"""Bad input gets a 4xx with the error body and changes nothing, on PostgreSQL.

PostgreSQL refuses NUL characters that SQLite stores, so these run the flag
service's app against a database of their own on the shared PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flags.app import create_app
from flags.startup import prepare
from tests.flags.conftest import admin, create_flag, make_settings

pytestmark = pytest.mark.integration

DEEP = "[" * 5000 + "]" * 5000
FEATURE = {"name": "ops.kept", "enabled": True, "strategies": [{"name": "default", "parameters": {}}]}
OTHER = {"name": "ops.other", "enabled": True, "strategies": [{"name": "default", "parameters": {}}]}


@pytest.fixture
def pg_app(tmp_path: Path, fresh_postgres_url: str) -> Iterator[Flask]:
    settings = make_settings(tmp_path, database_url=fresh_postgres_url)
    prepare(settings)
    app = create_app(settings)
    yield app
    app.extensions["rollguard"].db.dispose()


@pytest.fixture
def pg(pg_app: Flask) -> FlaskClient:
    return pg_app.test_client()


def _error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.json["error"]["code"] == code
    assert set(response.json["error"]) == {"code", "message", "details"}


def _state(client: FlaskClient) -> tuple[Any, Any]:
    flags = client.get("/api/admin/flags", headers=admin()).json["flags"]
    events = client.get("/api/admin/events", headers=admin(), query_string={"limit": 1000}).json["events"]
    return flags, len(events)


def _raw(client: FlaskClient, method: str, path: str, body: str) -> Any:
    return client.open(
        path, method=method, data=body, headers={**admin(), "Content-Type": "application/json"}
    )


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param(
            "POST", "/api/admin/flags", '{"key": "nul", "description": "a\\u0000b"}', id="description"
        ),
        pytest.param("POST", "/api/admin/flags/opt/kill", '{"reason": "bad\\u0000reason"}', id="kill-reason"),
        pytest.param(
            "POST", "/api/admin/flags", '{"key": "nul", "payload": {"k\\u0000": 1}}', id="payload-key"
        ),
        pytest.param("GET", "/api/admin/flags/op%00t", "", id="key-in-path"),
        pytest.param("GET", "/api/admin/events?flag=op%00t", "", id="events-filter"),
        pytest.param("DELETE", "/api/admin/flags/opt?reason=a%00", "", id="query-reason"),
    ],
)
def test_nul_character_is_a_400_and_stores_nothing(
    pg: FlaskClient, method: str, path: str, body: str
) -> None:
    create_flag(pg, "opt", enabled=True, rollout=10)
    before = _state(pg)
    _error(_raw(pg, method, path, body), 400, "nul_character")
    assert _state(pg) == before


def test_escaped_backslash_before_u0000_is_not_a_nul(pg: FlaskClient) -> None:
    response = _raw(pg, "POST", "/api/admin/flags", '{"key": "esc", "description": "C:\\\\u0000"}')
    assert response.status_code == 201, response.json
    assert response.json["description"] == "C:\\u0000"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("POST", "/api/admin/flags", id="create"),
        pytest.param("POST", "/api/admin/import", id="import"),
        pytest.param("PATCH", "/api/admin/flags/opt", id="patch"),
        pytest.param("POST", "/api/client/metrics", id="client-metrics"),
    ],
)
def test_deeply_nested_json_is_a_400(pg: FlaskClient, method: str, path: str) -> None:
    create_flag(pg, "opt")
    before = _state(pg)
    body = '{"key": "deep", "payload": {"x": ' + DEEP + "}}"
    _error(_raw(pg, method, path, body), 400, "too_deeply_nested")
    assert _state(pg) == before


def test_nesting_within_the_limit_is_accepted(pg: FlaskClient) -> None:
    payload: Any = 1
    for _ in range(30):
        payload = {"x": payload}
    assert create_flag(pg, "nested", payload={"p": payload})["payload"] == {"p": payload}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"key": "nl-key\n"}, "key", id="trailing-newline"),
        pytest.param({"key": "\nnl-key"}, "key", id="leading-newline"),
        pytest.param({"key": "opt", "enabled": "yes"}, "enabled", id="enabled-yes"),
        pytest.param({"key": "opt", "enabled": 1}, "enabled", id="enabled-one"),
        pytest.param({"key": "opt", "auto_promote": 0}, "auto_promote", id="auto-promote-zero"),
        pytest.param({"key": "opt", "auto_promote": "false"}, "auto_promote", id="auto-promote-string"),
    ],
)
def test_garbage_is_refused_not_coerced(pg: FlaskClient, body: dict[str, Any], field: str) -> None:
    before = _state(pg)
    response = pg.post("/api/admin/flags", json=body, headers=admin())
    _error(response, 422, "validation_failed")
    assert field in response.json["error"]["details"]["json"]
    assert _state(pg) == before


def test_token_name_with_trailing_newline_is_refused(pg: FlaskClient) -> None:
    response = pg.post("/api/admin/tokens", json={"name": "ci\n", "scope": "client"}, headers=admin())
    _error(response, 422, "validation_failed")


def _import(client: FlaskClient, body: Any, *, replace: bool = True, raw: str | None = None) -> Any:
    data = raw if raw is not None else json.dumps(body)
    query = {"replace": "true"} if replace else {}
    headers = {**admin(), "Content-Type": "application/json"}
    return client.post("/api/admin/import", data=data, query_string=query, headers=headers)


def _served(client: FlaskClient) -> list[str]:
    export = client.get("/api/admin/export", headers=admin()).json
    return sorted(feature["name"] for feature in export["features"])


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        pytest.param("", 400, id="no-body"),
        pytest.param("{}", 400, id="empty-object"),
        pytest.param('{"reason": "wipe"}', 400, id="only-reason"),
        pytest.param('{"features": [', 400, id="truncated"),
        pytest.param("[]", 422, id="array-is-not-a-document"),
    ],
)
def test_empty_or_malformed_import_is_refused_and_removes_nothing(
    pg: FlaskClient, raw: str, status: int
) -> None:
    assert _import(pg, {"version": 2, "features": [FEATURE, OTHER]}).status_code == 200
    before = _served(pg)
    response = _import(pg, None, raw=raw)
    assert response.status_code == status, response.json
    assert _served(pg) == before == ["ops.kept", "ops.other"]


def test_replace_that_removes_features_needs_an_export(pg: FlaskClient) -> None:
    assert _import(pg, {"version": 2, "features": [FEATURE, OTHER]}).status_code == 200
    response = _import(pg, {"features": [FEATURE]})
    _error(response, 409, "replace_would_remove")
    assert response.json["error"]["details"] == {"removed_features": 1, "removed_segments": 0}
    assert _served(pg) == ["ops.kept", "ops.other"]
    # Without replace the same document only adds or overwrites.
    assert _import(pg, {"features": [FEATURE]}, replace=False).json["removed_features"] == 0
    # A real export (version and features) may replace, and says what it removed.
    response = _import(pg, {"version": 2, "features": [FEATURE]})
    assert response.status_code == 200, response.json
    assert response.json["removed_features"] == 1
    assert _served(pg) == ["ops.kept"]


@pytest.mark.parametrize("name", ["ops.kept\n", "ops\tkept", "\u007fops"])
def test_imported_feature_name_with_a_control_character_is_refused(pg: FlaskClient, name: str) -> None:
    before = _state(pg), _served(pg)
    response = _import(pg, {"features": [{**FEATURE, "name": name}]}, replace=False)
    _error(response, 422, "validation_failed")
    assert (_state(pg), _served(pg)) == before


def test_imported_feature_name_may_be_any_printable_text(pg: FlaskClient) -> None:
    # As in Unleash's client specification tests.
    name = "Feature.UTF-8.Hellø_Wørld 😊"
    assert _import(pg, {"features": [{**FEATURE, "name": name}]}, replace=False).status_code == 200
    assert _served(pg) == [name]


def test_replace_that_removes_segments_needs_an_export(pg: FlaskClient) -> None:
    on_segment = {**FEATURE, "strategies": [{"name": "default", "parameters": {}, "segments": [1]}]}
    segment = {"id": 1, "name": "beta", "constraints": []}
    assert _import(pg, {"version": 2, "features": [on_segment], "segments": [segment]}).status_code == 200
    # Every feature is kept, but the segment a kept feature uses would go.
    response = _import(pg, {"features": [on_segment]})
    _error(response, 409, "replace_would_remove")
    assert response.json["error"]["details"] == {"removed_features": 0, "removed_segments": 1}
    assert pg.get("/api/admin/export", headers=admin()).json["segments"] == [segment]


def test_export_imports_back_with_replace(pg: FlaskClient) -> None:
    create_flag(pg, "opt", enabled=True, rollout=10)
    assert _import(pg, {"version": 2, "features": [FEATURE]}).status_code == 200
    export = pg.get("/api/admin/export", headers=admin()).json
    response = _import(pg, export)
    assert response.status_code == 200, response.json
    assert response.json["removed_features"] == 0
    assert _served(pg) == sorted(["ops.kept", "opt"])
