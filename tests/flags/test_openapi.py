"""The OpenAPI document covers every route, and no generated input gets a 500.

schemathesis generates requests (valid and invalid) from the served
/openapi.json and sends them to the live WSGI app with an admin token.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from flags.app import create_app
from flags.startup import prepare
from tests.flags.conftest import ADMIN, make_settings


@pytest.fixture(scope="module")
def fuzzed_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    app_settings = make_settings(Path(tmp_path_factory.mktemp("openapi")))
    prepare(app_settings)
    app = create_app(app_settings)
    yield app
    app.extensions["rollguard"].db.dispose()


@pytest.fixture(scope="module")
def api_schema(fuzzed_app: Flask) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_wsgi("/openapi.json", fuzzed_app)


def test_every_route_is_documented(client) -> None:
    document = client.get("/openapi.json").json
    assert document["openapi"].startswith("3.")
    paths = set(document["paths"])
    for path in (
        "/api/admin/flags",
        "/api/admin/flags/{key}",
        "/api/admin/flags/{key}/rollout",
        "/api/admin/flags/{key}/kill",
        "/api/admin/flags/{key}/resume",
        "/api/admin/events",
        "/api/admin/annotations",
        "/api/admin/tokens",
        "/api/admin/tokens/{token_id}",
        "/api/admin/import",
        "/api/admin/export",
        "/api/admin/exposures",
        "/api/client/features",
        "/api/client/register",
        "/api/client/metrics",
        "/ofrep/v1/evaluate/flags",
        "/ofrep/v1/evaluate/flags/{key}",
        "/payloads/ofrep/v1/evaluate/flags",
        "/payloads/ofrep/v1/evaluate/flags/{key}",
        "/api/admin/export/unleash",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in paths, path
    routes = {
        re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for rule in client.application.url_map.iter_rules()
        if rule.endpoint != "static"
    }
    assert routes - paths <= {"/openapi.json"}


def test_no_input_causes_a_server_error(api_schema: schemathesis.BaseSchema) -> None:
    # schemathesis' pytest plugin does not load under pytest 9, so drive its strategies directly.
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 19
    for operation, mode in itertools.product(operations, list(schemathesis.GenerationMode)):

        @given(case=operation.as_strategy(mode))
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def check(case: schemathesis.Case) -> None:
            response = case.call(headers={"Authorization": ADMIN})
            case.validate_response(response, checks=[not_a_server_error])

        try:
            check()
        except Exception as exc:  # noqa: BLE001 - collected per operation, reported together below
            failures.append(f"{operation.label} ({mode.value}): {str(exc)[:2000]}")
    assert not failures, "\n\n".join(failures)
