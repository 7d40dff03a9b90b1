"""Kill and resume need a reason and honour If-Match; a stale write gets the fresh state back."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.flags.conftest import admin, create_flag


@pytest.mark.parametrize("action", ["kill", "resume"])
@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": "   "}], ids=["missing", "empty", "blank"])
def test_kill_and_resume_refuse_a_write_without_a_reason(
    client: FlaskClient, action: str, body: dict[str, str]
) -> None:
    create_flag(client, "checkout", enabled=action == "kill", rollout=50)

    response = client.post(f"/api/admin/flags/checkout/{action}", json=body, headers=admin())

    assert response.status_code == 422
    assert "reason" in str(response.json["error"]["details"])
    events = client.get("/api/admin/events", headers=admin()).json["events"]
    assert [e["action"] for e in events] == ["create"]


def test_set_rollout_records_its_reason(client: FlaskClient) -> None:
    create_flag(client, "checkout", enabled=True, rollout=10)

    client.put(
        "/api/admin/flags/checkout/rollout",
        json={"rollout": 50, "reason": "stage 2 by hand"},
        headers=admin(),
    )

    event = client.get("/api/admin/events", headers=admin()).json["events"][0]
    assert (event["action"], event["reason"]) == ("set_rollout", "stage 2 by hand")


@pytest.mark.parametrize("action", ["kill", "resume"])
def test_a_stale_kill_or_resume_is_refused_with_the_fresh_state(client: FlaskClient, action: str) -> None:
    created = create_flag(client, "checkout", enabled=action == "kill", rollout=10)
    client.put(
        "/api/admin/flags/checkout/rollout", json={"rollout": 50, "reason": "elsewhere"}, headers=admin()
    )

    response = client.post(
        f"/api/admin/flags/checkout/{action}",
        json={"reason": "from an old page"},
        headers={**admin(), "If-Match": str(created["version"])},
    )

    assert response.status_code == 409
    details = response.json["error"]["details"]
    assert details["current"]["rollout"] == 50
    assert details["current"]["version"] == details["current_version"] == created["version"] + 1
    current = client.get("/api/admin/flags/checkout", headers=admin()).json
    assert current["enabled"] is (action == "kill")


def test_kill_at_the_current_version_goes_through(client: FlaskClient) -> None:
    created = create_flag(client, "checkout", enabled=True, rollout=10)

    response = client.post(
        "/api/admin/flags/checkout/kill",
        json={"reason": "p95 over budget"},
        headers={**admin(), "If-Match": str(created["version"])},
    )

    assert response.status_code == 200
    assert (response.json["enabled"], response.json["version"]) == (False, created["version"] + 1)
