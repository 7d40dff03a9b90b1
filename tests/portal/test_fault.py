"""The admin fault endpoint: refused without a configured token, authorised, validated, optimized path only."""

from __future__ import annotations

import pytest

TOKEN = "fault-admin-token"
PAGE = "/api/pages/exam-home?student_id=2&series_id=3"


def test_fault_endpoint_is_refused_when_no_admin_token_is_configured(make_app):
    client = make_app(optimize=True).test_client()
    response = client.post("/api/admin/fault", json={"error_rate": 1}, headers={"Authorization": "anything"})
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "disabled"
    assert client.get(PAGE).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"Authorization": "wrong"}, id="wrong"),
        pytest.param({"Authorization": f"Basic {TOKEN}"}, id="wrong-scheme"),
        pytest.param({"Authorization": TOKEN[:-1]}, id="prefix"),
    ],
)
def test_fault_endpoint_needs_the_admin_token(make_app, headers):
    client = make_app(optimize=True, admin_token=TOKEN).test_client()
    for method in (client.post, client.delete, client.get):
        response = method("/api/admin/fault", json={"error_rate": 1}, headers=headers)
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "unauthorized"
    assert client.get(PAGE).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"error_rate": 1.5}, id="rate-above-one"),
        pytest.param({"error_rate": -0.1}, id="negative-rate"),
        pytest.param({"error_rate": 0.1, "latency_ms": -1}, id="negative-latency"),
        pytest.param({"error_rate": 0.1, "latency_ms": 600_000}, id="latency-too-long"),
        pytest.param({"error_rate": "0.5"}, id="string-rate"),
        pytest.param({"error_rate": True}, id="boolean-rate"),
        pytest.param({"latency_ms": 10}, id="missing-rate"),
        pytest.param({"error_rate": 0.1, "extra": 1}, id="unknown-field"),
    ],
)
def test_invalid_faults_are_422_and_change_nothing(make_app, body):
    client = make_app(optimize=True, admin_token=TOKEN).test_client()
    response = client.post("/api/admin/fault", json=body, headers={"Authorization": TOKEN})
    assert response.status_code == 422
    assert response.get_json()["error"]["details"]
    assert client.get("/api/admin/fault", headers={"Authorization": TOKEN}).get_json()["active"] is False


def test_fault_breaks_the_optimized_path_only_until_cleared(make_app):
    optimized = make_app(optimize=True, admin_token=TOKEN).test_client()
    direct = make_app(optimize=False, admin_token=TOKEN).test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for client in (optimized, direct):
        response = client.post("/api/admin/fault", json={"error_rate": 1, "latency_ms": 0}, headers=auth)
        assert response.status_code == 200
        assert response.get_json() == {"active": True, "error_rate": 1.0, "latency_ms": 0.0}

    failed = optimized.get(PAGE)
    assert failed.status_code == 503
    assert failed.get_json()["error"]["code"] == "fault_injected"
    assert direct.get(PAGE).status_code == 200

    assert optimized.delete("/api/admin/fault", headers=auth).get_json()["active"] is False
    assert optimized.get(PAGE).status_code == 200
