"""Unleash client API behaviour: the features document, ETags, auth, register and metrics."""

from __future__ import annotations

import json

from flask.testing import FlaskClient

from tests.flags.conftest import admin, create_flag, sdk


def _feature(client: FlaskClient, key: str) -> dict:
    body = client.get("/api/client/features", headers=sdk()).json
    return next(f for f in body["features"] if f["name"] == key)


def test_flag_is_served_as_flexible_rollout_with_payload_variant(client: FlaskClient) -> None:
    create_flag(client, "opt", enabled=True, rollout=25, payload={"ttl_s": 30})
    feature = _feature(client, "opt")
    assert feature["enabled"] is True
    [strategy] = feature["strategies"]
    assert strategy["name"] == "flexibleRollout"
    assert strategy["parameters"] == {"rollout": "25", "stickiness": "userId", "groupId": "opt"}
    [variant] = strategy["variants"]
    assert (variant["name"], variant["weight"]) == ("config", 1000)
    assert variant["payload"]["type"] == "json"
    assert json.loads(variant["payload"]["value"]) == {"ttl_s": 30}


def test_etag_gives_304_until_a_change(client: FlaskClient) -> None:
    create_flag(client, "opt")
    first = client.get("/api/client/features", headers=sdk())
    etag = first.headers["ETag"]
    again = client.get("/api/client/features", headers=sdk(**{"If-None-Match": etag}))
    assert again.status_code == 304
    assert again.headers["ETag"] == etag
    client.post("/api/admin/flags/opt/resume", json={"reason": "go"}, headers=admin())
    changed = client.get("/api/client/features", headers=sdk(**{"If-None-Match": etag}))
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag
    assert _feature(client, "opt")["enabled"] is True


def test_query_string_takes_the_full_view_with_the_same_answer(client: FlaskClient) -> None:
    create_flag(client, "opt")
    fast = client.get("/api/client/features", headers=sdk())
    full = client.get("/api/client/features?project=default", headers=sdk())
    assert full.status_code == 200
    assert (full.data, full.headers["ETag"]) == (fast.data, fast.headers["ETag"])


def test_features_need_a_token(client: FlaskClient) -> None:
    assert client.get("/api/client/features").status_code == 401
    wrong = client.get("/api/client/features", headers={"Authorization": "nope"})
    assert wrong.status_code == 401
    assert wrong.json["error"]["code"] == "unauthenticated"
    assert client.get("/api/client/features", headers=admin()).status_code == 200
    bearer = client.get("/api/client/features", headers={"Authorization": "Bearer client-test-token"})
    assert bearer.status_code == 200


def test_revoked_token_stops_working(client: FlaskClient) -> None:
    token = client.post("/api/admin/tokens", json={"name": "portal", "scope": "client"}, headers=admin()).json
    headers = {"Authorization": token["secret"]}
    assert client.get("/api/client/features", headers=headers).status_code == 200
    assert client.delete(f"/api/admin/tokens/{token['id']}", headers=admin()).status_code == 204
    assert client.get("/api/client/features", headers=headers).status_code == 401
    listed = client.get("/api/admin/tokens", headers=admin()).json["tokens"]
    assert all("secret" not in t for t in listed)
    assert next(t for t in listed if t["id"] == token["id"])["revoked"] is True


def test_metrics_become_exposures(client: FlaskClient) -> None:
    create_flag(client, "opt")
    bucket = {
        "start": "2026-01-01T10:00:00Z",
        "stop": "2026-01-01T10:01:00Z",
        "toggles": {"opt": {"yes": 7, "no": 3, "variants": {"config": 7}}},
    }
    body = {"appName": "portal", "instanceId": "i-1", "bucket": bucket, "platformName": "CPython"}
    assert client.post("/api/client/metrics", json=body, headers=sdk()).status_code == 202
    exposures = client.get("/api/admin/exposures?flag=opt", headers=admin()).json["exposures"]
    assert exposures == [
        {
            "flag": "opt",
            "app_name": "portal",
            "bucket_start": "2026-01-01T10:00:00Z",
            "bucket_end": "2026-01-01T10:01:00Z",
            "yes": 7,
            "no": 3,
        }
    ]


def test_register_is_accepted_and_validated(client: FlaskClient) -> None:
    body = {
        "appName": "portal",
        "instanceId": "i-1",
        "sdkVersion": "python:6.9.1",
        "strategies": ["default"],
        "started": "2026-01-01T10:00:00Z",
        "interval": 15000,
    }
    assert client.post("/api/client/register", json=body, headers=sdk()).status_code == 202
    assert client.post("/api/client/register", json=body, headers=sdk()).status_code == 202
    assert client.post("/api/client/register", json={"instanceId": "x"}, headers=sdk()).status_code == 422


def test_import_export_round_trip(client: FlaskClient) -> None:
    create_flag(client, "opt", enabled=True, rollout=10, payload={"batch": 8})
    unleash = {
        "features": [{"name": "Legacy.Feature", "enabled": True, "strategies": [{"name": "default"}]}],
        "segments": [{"id": 1, "constraints": []}],
    }
    result = client.post("/api/admin/import", json=unleash, headers=admin()).json
    assert (result["features"], result["segments"]) == (1, 1)
    exported = client.get("/api/admin/export", headers=admin()).json
    assert {f["name"] for f in exported["features"]} == {"opt", "Legacy.Feature"}
    again = client.post("/api/admin/import?replace=true", json=exported, headers=admin())
    assert again.status_code == 200
    assert again.json == {
        "format": "rollguard",
        "flags": 1,
        "features": 1,
        "segments": 1,
        "removed_features": 0,
        "removed_segments": 0,
        "report": [],
    }
    assert _feature(client, "opt")["strategies"][0]["parameters"]["rollout"] == "10"
    shadowing = {"features": [{"name": "opt", "enabled": True, "strategies": []}]}
    assert client.post("/api/admin/import", json=shadowing, headers=admin()).status_code == 409
    partial = client.post("/api/admin/import?replace=true", json={"features": []}, headers=admin())
    assert partial.status_code == 409
    assert partial.json["error"]["details"] == {"removed_features": 1, "removed_segments": 1}
    emptied = client.post(
        "/api/admin/import?replace=true", json={"version": 2, "features": []}, headers=admin()
    )
    assert emptied.json["removed_features"] == 1
    names = {f["name"] for f in client.get("/api/client/features", headers=sdk()).json["features"]}
    assert names == {"opt"}


def test_health_readiness_and_metrics(client: FlaskClient) -> None:
    create_flag(client, "opt")
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz").json
    assert ready["status"] == "ready"
    assert ready["revision"] >= 1
    client.get("/api/client/features", headers=sdk())
    text = client.get("/metrics").get_data(as_text=True)
    assert "rollguard_flags_served_features 1.0" in text
    assert 'rollguard_flags_client_features_requests_total{status="200"}' in text
    assert 'rollguard_flags_changes_total{action="create"}' in text


def test_import_the_engine_cannot_load_is_refused_and_changes_nothing(client: FlaskClient) -> None:
    create_flag(client, "opt", enabled=True, rollout=100)
    broken = {"features": [{"name": "x", "enabled": True, "strategies": [{"parameters": {}}]}]}
    response = client.post("/api/admin/import", json=broken, headers=admin())
    assert response.status_code == 422
    names = {f["name"] for f in client.get("/api/client/features", headers=sdk()).json["features"]}
    assert names == {"opt"}
