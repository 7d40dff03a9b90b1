"""OFREP behaviour: single and bulk evaluation agree with the flag's rollout and payload."""

from __future__ import annotations

import json
from typing import Any

from flask.testing import FlaskClient

from tests.flags.conftest import admin, create_flag, sdk


def _evaluate(client: FlaskClient, key: str, context: dict) -> Any:
    response = client.post(f"/ofrep/v1/evaluate/flags/{key}", json={"context": context}, headers=sdk())
    assert response.status_code == 200, response.json
    return response.json


def test_fully_rolled_out_flag_is_on_with_payload(client: FlaskClient) -> None:
    create_flag(client, "opt", enabled=True, rollout=100, payload={"ttl_s": 30})
    result = _evaluate(client, "opt", {"targetingKey": "student-1"})
    assert (result["key"], result["value"], result["variant"]) == ("opt", True, "config")
    assert json.loads(result["metadata"]["payload"]) == {"ttl_s": 30}


def test_killed_flag_is_off(client: FlaskClient) -> None:
    create_flag(client, "opt", enabled=True, rollout=100)
    client.post("/api/admin/flags/opt/kill", json={"reason": "x"}, headers=admin())
    result = _evaluate(client, "opt", {"targetingKey": "student-1"})
    assert (result["value"], result["reason"]) == (False, "DISABLED")


def test_partial_rollout_splits_users_stickily(client: FlaskClient) -> None:
    create_flag(client, "opt", enabled=True, rollout=50)
    first = [_evaluate(client, "opt", {"targetingKey": f"u{i}"})["value"] for i in range(60)]
    second = [_evaluate(client, "opt", {"targetingKey": f"u{i}"})["value"] for i in range(60)]
    assert first == second
    assert 0 < sum(first) < 60


def test_unknown_flag_is_flag_not_found(client: FlaskClient) -> None:
    response = client.post("/ofrep/v1/evaluate/flags/nope", json={"context": {}}, headers=sdk())
    assert response.status_code == 404
    assert response.json["errorCode"] == "FLAG_NOT_FOUND"


def test_nested_context_is_invalid(client: FlaskClient) -> None:
    create_flag(client, "opt")
    response = client.post(
        "/ofrep/v1/evaluate/flags/opt", json={"context": {"user": {"id": 1}}}, headers=sdk()
    )
    assert response.status_code == 400
    assert response.json["errorCode"] == "INVALID_CONTEXT"


def test_bulk_evaluation_has_context_bound_etag(client: FlaskClient) -> None:
    create_flag(client, "a", enabled=True, rollout=100)
    create_flag(client, "b")
    response = client.post(
        "/ofrep/v1/evaluate/flags", json={"context": {"targetingKey": "u1"}}, headers=sdk()
    )
    values = {f["key"]: f["value"] for f in response.json["flags"]}
    assert values == {"a": True, "b": False}
    etag = response.headers["ETag"]
    same = client.post(
        "/ofrep/v1/evaluate/flags",
        json={"context": {"targetingKey": "u1"}},
        headers=sdk(**{"If-None-Match": etag}),
    )
    assert same.status_code == 304
    other = client.post(
        "/ofrep/v1/evaluate/flags",
        json={"context": {"targetingKey": "u2"}},
        headers=sdk(**{"If-None-Match": etag}),
    )
    assert other.status_code == 200


def test_ofrep_needs_a_token(client: FlaskClient) -> None:
    assert client.post("/ofrep/v1/evaluate/flags", json={"context": {}}).status_code == 401
