"""Every admin route of the served OpenAPI document refuses missing, wrong and client-scoped tokens.

The route list is read from `/openapi.json` of a real app at collection time,
so a new admin route is covered without editing this file.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flags.app import create_app
from flags.startup import prepare
from tests.flags.conftest import ADMIN, CLIENT, admin, create_flag, make_settings

METHODS = ("get", "post", "put", "patch", "delete")
FLAG_KEY = "checkout"
PATH_VALUES = {"key": FLAG_KEY, "token_id": "1"}
KNOWN = {
    ("/api/admin/flags", "get"),
    ("/api/admin/flags", "post"),
    ("/api/admin/flags/{key}", "get"),
    ("/api/admin/flags/{key}", "patch"),
    ("/api/admin/flags/{key}", "delete"),
    ("/api/admin/flags/{key}/rollout", "put"),
    ("/api/admin/flags/{key}/kill", "post"),
    ("/api/admin/flags/{key}/resume", "post"),
    ("/api/admin/events", "get"),
    ("/api/admin/tokens", "get"),
    ("/api/admin/tokens", "post"),
    ("/api/admin/tokens/{token_id}", "delete"),
    ("/api/admin/import", "post"),
    ("/api/admin/export", "get"),
    ("/api/admin/export/unleash", "get"),
    ("/api/admin/exposures", "get"),
}
# Plausible bodies, so that only the credentials are wrong.
BODIES: dict[tuple[str, str], Any] = {
    ("/api/admin/flags", "post"): {"key": "another"},
    ("/api/admin/flags/{key}", "patch"): {"description": "changed"},
    ("/api/admin/flags/{key}/rollout", "put"): {"rollout": 10},
    ("/api/admin/flags/{key}/kill", "post"): {"reason": "incident"},
    ("/api/admin/flags/{key}/resume", "post"): {"reason": "fixed"},
    ("/api/admin/tokens", "post"): {"name": "ci", "scope": "client"},
    ("/api/admin/import", "post"): {"features": [], "segments": []},
}
CREDENTIALS = {
    "no-token": (None, 401),
    "wrong-token": ("wrong-" + ADMIN, 401),
    "wrong-bearer": ("Bearer wrong-" + ADMIN, 401),
    "client-token": (CLIENT, 403),
    "client-bearer": ("Bearer " + CLIENT, 403),
}


def _served_openapi() -> dict[str, Any]:
    """The OpenAPI document as a freshly prepared app serves it."""
    with tempfile.TemporaryDirectory() as directory:
        settings = make_settings(Path(directory))
        prepare(settings)
        app = create_app(settings)
        try:
            response = app.test_client().get("/openapi.json")
            assert response.status_code == 200
            document: dict[str, Any] = response.get_json()
        finally:
            app.extensions["rollguard"].db.dispose()
    return document


def admin_routes(document: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted(
        (path, method)
        for path, operations in document["paths"].items()
        if path.startswith("/api/admin/")
        for method in operations
        if method in METHODS
    )


ROUTES = admin_routes(_served_openapi())


def _url(path: str) -> str:
    return path.format(**PATH_VALUES)


@pytest.fixture(scope="module")
def module_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    settings = make_settings(tmp_path_factory.mktemp("auth-matrix"))
    prepare(settings)
    app = create_app(settings)
    create_flag(app.test_client(), FLAG_KEY)
    yield app
    app.extensions["rollguard"].db.dispose()


@pytest.fixture
def matrix_client(module_app: Flask) -> FlaskClient:
    return module_app.test_client()


def test_route_list_is_derived_and_complete(client: FlaskClient) -> None:
    assert ROUTES, "no admin routes in the OpenAPI document"
    assert KNOWN <= set(ROUTES), sorted(KNOWN - set(ROUTES))
    assert admin_routes(client.get("/openapi.json").get_json()) == ROUTES


def test_path_values_name_existing_objects(matrix_client: FlaskClient) -> None:
    assert matrix_client.get(_url("/api/admin/flags/{key}"), headers=admin()).status_code == 200
    tokens = matrix_client.get("/api/admin/tokens", headers=admin()).get_json()["tokens"]
    assert PATH_VALUES["token_id"] in {str(token["id"]) for token in tokens}


@pytest.mark.parametrize("credential", sorted(CREDENTIALS))
@pytest.mark.parametrize(("path", "method"), ROUTES, ids=[f"{m.upper()} {p}" for p, m in ROUTES])
def test_admin_route_refuses(matrix_client: FlaskClient, path: str, method: str, credential: str) -> None:
    token, status = CREDENTIALS[credential]
    headers = {"If-Match": "1"} if method == "patch" else {}
    if token is not None:
        headers["Authorization"] = token
    # One client address per case: the failed-authentication limit (per address) stays on but never trips here.
    address = f"10.{ROUTES.index((path, method))}.{sorted(CREDENTIALS).index(credential)}.1"
    response = matrix_client.open(
        _url(path),
        method=method.upper(),
        headers=headers,
        json=BODIES.get((path, method)),
        environ_base={"REMOTE_ADDR": address},
    )
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    error = body["error"]
    assert {"code", "message"} <= set(error), error
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert error["code"] == ("unauthenticated" if status == 401 else "forbidden")


def test_refused_requests_changed_nothing(matrix_client: FlaskClient) -> None:
    flag = matrix_client.get(_url("/api/admin/flags/{key}"), headers=admin()).get_json()
    assert flag["version"] == 1 and flag["state"] == "draft" and flag["rollout"] == 0
    keys = [f["key"] for f in matrix_client.get("/api/admin/flags", headers=admin()).get_json()["flags"]]
    assert keys == [FLAG_KEY]
    assert len(matrix_client.get("/api/admin/tokens", headers=admin()).get_json()["tokens"]) == 2
