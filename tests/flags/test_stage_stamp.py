"""`stage_started_at`: stamped with its audit event when a stage starts, untouched by other edits."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from flask.testing import FlaskClient

from flags.model import parse_time
from tests.flags.conftest import admin, create_flag

GUARDRAIL = {"metric": "error_rate", "op": "<=", "threshold": 0.02, "path": "optimized"}


def _flag(client: FlaskClient, key: str = "opt") -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"/api/admin/flags/{key}", headers=admin()).get_json()
    return body


def _newest_event(client: FlaskClient, key: str = "opt") -> dict[str, Any]:
    (event,) = client.get(f"/api/admin/events?flag={key}&limit=1", headers=admin()).json["events"]
    return dict(event)


def _patch(client: FlaskClient, changes: dict[str, Any], *, actor: str = "alice") -> dict[str, Any]:
    version = _flag(client)["version"]
    response = client.patch(
        "/api/admin/flags/opt", json=changes, headers=admin(actor, **{"If-Match": str(version)})
    )
    assert response.status_code == 200, response.json
    body: dict[str, Any] = response.get_json()
    return body


def _started(flag: dict[str, Any]) -> tuple[str, str | None]:
    return flag["stage_started_at"], flag["stage_started_by"]


def _at(flag: dict[str, Any]) -> datetime:
    # Compared as times: ISO text leaves out a zero fraction of a second, which breaks text order.
    at = parse_time(flag["stage_started_at"])
    assert at is not None
    return at


def test_create_starts_the_first_stage(client: FlaskClient) -> None:
    response = client.post(
        "/api/admin/flags", json={"key": "opt", "enabled": True, "rollout": 10}, headers=admin("alice")
    )
    flag = response.get_json()
    assert flag["stage_started_at"] == flag["created_at"] == _newest_event(client)["time"]
    assert flag["stage_started_at"].endswith("Z")
    assert flag["stage_started_by"] == "alice"
    listed = client.get("/api/admin/flags", headers=admin()).json["flags"]
    assert _started(listed[0]) == _started(flag)


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"description": "faster attempts page"}, id="description"),
        pytest.param({"guardrails": [GUARDRAIL]}, id="guardrails"),
        pytest.param({"stages": [5, 25, 100]}, id="stages"),
        pytest.param({"stage_hold_s": 60}, id="hold"),
        pytest.param({"auto_promote": False}, id="auto-promote"),
        pytest.param({"rollback": {"consecutive_failures": 3}}, id="rollback-policy"),
    ],
)
def test_an_edit_that_changes_no_exposure_keeps_the_stamp(
    client: FlaskClient, changes: dict[str, Any]
) -> None:
    before = create_flag(client, "opt", enabled=True, rollout=10, auto_promote=True)
    after = _patch(client, changes, actor="bob")
    assert after["version"] == before["version"] + 1
    assert _started(after) == _started(before)


def test_each_stage_change_moves_the_stamp_to_its_audit_event(client: FlaskClient) -> None:
    create_flag(client, "opt", enabled=True, rollout=10, payload={"fn": "attempts", "ttl_s": 5})
    steps = [
        (
            "rollout",
            lambda: client.put("/api/admin/flags/opt/rollout", json={"rollout": 50}, headers=admin("ci")),
        ),
        (
            "kill",
            lambda: client.post("/api/admin/flags/opt/kill", json={"reason": "r"}, headers=admin("oncall")),
        ),
        (
            "resume",
            lambda: client.post("/api/admin/flags/opt/resume", json={"reason": "r"}, headers=admin("op")),
        ),
        ("pause", lambda: _patch(client, {"state": "paused"}, actor="dash")),
        ("hand back", lambda: _patch(client, {"state": "rolling_out"}, actor="dash")),
        ("payload", lambda: _patch(client, {"payload": {"fn": "attempts", "ttl_s": 60}}, actor="tuner")),
        ("switch off", lambda: _patch(client, {"enabled": False}, actor="op")),
    ]
    previous = _flag(client)
    for name, change in steps:
        change()
        flag, event = _flag(client), _newest_event(client)
        assert _at(flag) > _at(previous), name
        assert (flag["stage_started_at"], flag["stage_started_by"]) == (event["time"], event["actor"]), name
        assert flag["stage_started_at"] == flag["updated_at"], name
        previous = flag


def test_a_change_that_changes_nothing_keeps_the_stamp(client: FlaskClient) -> None:
    create_flag(client, "opt", enabled=True, rollout=10)
    client.post("/api/admin/flags/opt/kill", json={"reason": "r"}, headers=admin())
    killed = _flag(client)
    client.post("/api/admin/flags/opt/kill", json={"reason": "again"}, headers=admin("someone-else"))
    client.put("/api/admin/flags/opt/rollout", json={"rollout": 10}, headers=admin("someone-else"))
    assert _flag(client) == killed


def test_an_import_stamps_its_own_changes_not_the_exported_ones(client: FlaskClient) -> None:
    create_flag(client, "opt", enabled=True, rollout=10, description="first")
    exported = client.get("/api/admin/export", headers=admin()).get_json()
    stamped = _flag(client)
    (flag,) = exported["flags"]
    assert _started(flag) == _started(stamped)

    described = {**exported, "flags": [{**flag, "description": "second", "stage_started_by": "forged"}]}
    assert client.post("/api/admin/import", json=described, headers=admin("importer")).status_code == 200
    assert _started(_flag(client)) == _started(stamped)

    promoted = {**exported, "flags": [{**flag, "rollout": 50, "stage_started_at": "2000-01-01T00:00:00Z"}]}
    assert client.post("/api/admin/import", json=promoted, headers=admin("importer")).status_code == 200
    after = _flag(client)
    assert after["stage_started_by"] == "importer"
    assert _at(after) > _at(stamped)
