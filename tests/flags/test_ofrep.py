"""OFREP behaviour: single and bulk evaluation agree with the flag's rollout and payload."""

from __future__ import annotations

import json
from typing import Any

import pytest
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


def _import_feature(client: FlaskClient, name: str, variants: list[dict[str, Any]], **strategy: Any) -> None:
    rollout = {"rollout": "100", "stickiness": "default", "groupId": name}
    feature = {
        "name": name,
        "enabled": True,
        "strategies": [{"name": "flexibleRollout", "parameters": rollout, "variants": variants, **strategy}],
    }
    response = client.post("/api/admin/import", json={"features": [feature]}, headers=admin())
    assert response.status_code == 200, response.json


def _variant(name: str, kind: str, value: str) -> dict[str, Any]:
    return {"name": name, "weight": 1000, "weightType": "variable", "payload": {"type": kind, "value": value}}


def _payload(client: FlaskClient, key: str, context: dict) -> Any:
    return client.post(f"/payloads/ofrep/v1/evaluate/flags/{key}", json={"context": context}, headers=sdk())


def test_an_enabled_flag_without_targeting_key_is_targeting_key_missing(client: FlaskClient) -> None:
    create_flag(client, "opt", enabled=True, rollout=50)
    for path in ("/ofrep/v1", "/payloads/ofrep/v1"):
        response = client.post(f"{path}/evaluate/flags/opt", json={"context": {"plan": "pro"}}, headers=sdk())
        assert response.status_code == 400
        assert response.json["errorCode"] == "TARGETING_KEY_MISSING"
    client.post("/api/admin/flags/opt/kill", json={"reason": "x"}, headers=admin())
    killed = client.post("/ofrep/v1/evaluate/flags/opt", json={"context": {}}, headers=sdk())
    assert (killed.status_code, killed.json["value"], killed.json["reason"]) == (200, False, "DISABLED")


@pytest.mark.parametrize(
    ("kind", "text", "value"),
    [
        pytest.param("json", '{"ttl_s": 30}', {"ttl_s": 30}, id="json-object"),
        pytest.param("json", "[1, 2]", [1, 2], id="json-array"),
        pytest.param("string", "#00f", "#00f", id="string"),
        pytest.param("csv", "a,b", "a,b", id="csv"),
        pytest.param("number", "12", 12, id="integer"),
        pytest.param("number", "0.25", 0.25, id="float"),
    ],
)
def test_payload_mount_answers_the_typed_payload(
    client: FlaskClient, kind: str, text: str, value: Any
) -> None:
    _import_feature(client, "typed", [_variant("chosen", kind, text)])
    response = _payload(client, "typed", {"targetingKey": "u1"})
    assert response.status_code == 200, response.json
    assert (response.json["value"], response.json["variant"]) == (value, "chosen")
    boolean = _evaluate(client, "typed", {"targetingKey": "u1"})
    assert (boolean["value"], boolean["metadata"]["payload"]) == (True, text)


def test_payload_mount_gives_a_flags_config_and_no_value_outside_the_rollout(client: FlaskClient) -> None:
    create_flag(client, "opt", enabled=True, rollout=100, payload={"ttl_s": 30})
    create_flag(client, "dark", enabled=True, rollout=0, payload={"ttl_s": 5})
    on = _payload(client, "opt", {"targetingKey": "u1"}).json
    assert (on["value"], on["variant"], on["reason"]) == ({"ttl_s": 30}, "config", "TARGETING_MATCH")
    outside = _payload(client, "dark", {"targetingKey": "u1"}).json
    assert "value" not in outside
    assert (outside["variant"], outside["reason"]) == ("off", "DEFAULT")


def test_payload_mount_answers_a_boolean_for_a_feature_without_payloads(client: FlaskClient) -> None:
    _import_feature(client, "plain", [])
    assert _payload(client, "plain", {"targetingKey": "u1"}).json["value"] is True


def test_unparsable_payload_is_a_parse_error(client: FlaskClient) -> None:
    _import_feature(client, "broken", [_variant("v", "json", "{not json")])
    response = _payload(client, "broken", {"targetingKey": "u1"})
    assert (response.status_code, response.json["errorCode"]) == (400, "PARSE_ERROR")


def test_bulk_payloads_are_typed_with_their_own_etag(client: FlaskClient) -> None:
    create_flag(client, "opt", enabled=True, rollout=100, payload={"ttl_s": 30})
    _import_feature(client, "colour", [_variant("blue", "string", "#00f")])
    body = {"context": {"targetingKey": "u1"}}
    typed = client.post("/payloads/ofrep/v1/evaluate/flags", json=body, headers=sdk())
    assert {f["key"]: f["value"] for f in typed.json["flags"]} == {"opt": {"ttl_s": 30}, "colour": "#00f"}
    boolean = client.post("/ofrep/v1/evaluate/flags", json=body, headers=sdk())
    assert {f["key"]: f["value"] for f in boolean.json["flags"]} == {"opt": True, "colour": True}
    assert typed.headers["ETag"] != boolean.headers["ETag"]
    anonymous = client.post("/ofrep/v1/evaluate/flags", json={"context": {}}, headers=sdk())
    assert {f["key"]: f["errorCode"] for f in anonymous.json["flags"]} == {
        "opt": "TARGETING_KEY_MISSING",
        "colour": "TARGETING_KEY_MISSING",
    }
