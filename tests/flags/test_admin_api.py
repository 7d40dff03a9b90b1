"""Admin API behaviour: flag CRUD, versions, state changes, audit log, errors."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flags.app import create_app
from flags.startup import prepare
from tests.flags.conftest import admin, create_flag, make_settings, sdk


def test_creates_flag_with_documented_defaults(client: FlaskClient) -> None:
    flag = create_flag(client, "checkout")
    assert flag["enabled"] is False
    assert flag["rollout"] == 0
    assert flag["stages"] == [10, 50, 100]
    assert flag["stage_hold_s"] == 300
    assert flag["auto_promote"] is False
    assert flag["guardrails"] == []
    assert flag["rollback"] == {"consecutive_failures": 2, "on_no_data": "hold"}
    assert flag["state"] == "draft"
    assert flag["payload"] == {}
    assert flag["version"] == 1
    assert flag["created_at"].endswith("Z")
    listed = client.get("/api/admin/flags", headers=admin()).json["flags"]
    assert [f["key"] for f in listed] == ["checkout"]


def test_guardrail_defaults_are_filled_and_stages_sorted(client: FlaskClient) -> None:
    flag = create_flag(
        client,
        "opt",
        stages=[100, 10, 50, 10],
        guardrails=[{"metric": "error_rate", "op": "<=", "threshold": 0.01, "path": "optimized"}],
    )
    assert flag["stages"] == [10, 50, 100]
    assert flag["guardrails"] == [
        {
            "metric": "error_rate",
            "op": "<=",
            "threshold": 0.01,
            "window_s": 60,
            "min_samples": 20,
            "path": "optimized",
            "kind": "threshold",
        }
    ]


@pytest.mark.parametrize(
    ("guardrail", "problem"),
    [
        pytest.param(
            {"metric": "cache_bytes", "threshold": 1e6, "kind": "comparative"},
            "needs one of",
            id="comparative-gauge",
        ),
        pytest.param(
            {"metric": "error_rate", "threshold": 0.01, "kind": "comparative", "path": "optimized"},
            "compares both cohorts",
            id="comparative-with-cohort",
        ),
        pytest.param(
            {"metric": "breaker_bypass_rate", "threshold": 0.05, "path": "optimized"},
            "has no cohorts",
            id="cohort-on-fn-metric",
        ),
        pytest.param(
            {"metric": "error_rate", "op": "<", "threshold": 5}, "within 0..1", id="rate-never-fails"
        ),
        pytest.param({"metric": "p95_latency_s", "threshold": -0.1}, "cannot be negative", id="negative"),
    ],
)
def test_a_guardrail_the_controller_cannot_judge_is_refused(
    client: FlaskClient, guardrail: dict[str, object], problem: str
) -> None:
    response = client.post(
        "/api/admin/flags", json={"key": "opt", "guardrails": [guardrail]}, headers=admin()
    )
    assert response.status_code == 422
    assert problem in json.dumps(response.json["error"]["details"])
    assert client.get("/api/admin/flags/opt", headers=admin()).status_code == 404


def test_a_repeated_guardrail_is_refused_on_update(client: FlaskClient) -> None:
    flag = create_flag(client, "opt")
    same = {"metric": "error_rate", "threshold": 0.01, "path": "optimized"}
    response = client.patch(
        "/api/admin/flags/opt",
        json={"guardrails": [same, same]},
        headers={**admin(), "If-Match": str(flag["version"])},
    )
    assert response.status_code == 422
    assert "guardrail 2: duplicates error_rate[optimized]<=0.01" in json.dumps(
        response.json["error"]["details"]
    )


def test_enabled_flag_created_with_rollout_is_rolling_out(client: FlaskClient) -> None:
    assert create_flag(client, "opt", enabled=True, rollout=10)["state"] == "rolling_out"


def test_duplicate_key_is_a_conflict(client: FlaskClient) -> None:
    create_flag(client, "checkout")
    response = client.post("/api/admin/flags", json={"key": "checkout"}, headers=admin())
    assert response.status_code == 409
    assert response.json["error"]["code"] == "flag_exists"


def test_patch_needs_if_match(client: FlaskClient) -> None:
    create_flag(client)
    response = client.patch("/api/admin/flags/checkout", json={"description": "x"}, headers=admin())
    assert response.status_code == 428
    assert response.json["error"]["code"] == "if_match_required"


def test_patch_with_stale_version_is_refused(client: FlaskClient) -> None:
    create_flag(client)
    ok = client.patch(
        "/api/admin/flags/checkout", json={"description": "one"}, headers=admin(**{"If-Match": "1"})
    )
    assert ok.status_code == 200
    assert ok.json["version"] == 2
    stale = client.patch(
        "/api/admin/flags/checkout", json={"description": "two"}, headers=admin(**{"If-Match": "1"})
    )
    assert stale.status_code == 409
    details = stale.json["error"]["details"]
    assert (details["current_version"], details["sent_version"]) == (2, 1)
    assert (details["current"]["version"], details["current"]["description"]) == (2, "one")
    assert client.get("/api/admin/flags/checkout", headers=admin()).json["description"] == "one"


def test_garbage_if_match_is_a_bad_request(client: FlaskClient) -> None:
    create_flag(client)
    response = client.patch("/api/admin/flags/checkout", json={}, headers=admin(**{"If-Match": "abc"}))
    assert response.status_code == 400
    assert response.json["error"]["code"] == "bad_if_match"


def test_rollout_moves_state_and_is_audited_with_actor(client: FlaskClient) -> None:
    create_flag(client, enabled=True)
    response = client.put(
        "/api/admin/flags/checkout/rollout",
        json={"rollout": 50, "reason": "stage 2"},
        headers=admin("controller"),
    )
    assert response.status_code == 200
    assert (response.json["rollout"], response.json["state"]) == (50, "rolling_out")
    full = client.put("/api/admin/flags/checkout/rollout", json={"rollout": 100}, headers=admin())
    assert full.json["state"] == "complete"
    events = client.get("/api/admin/events?flag=checkout", headers=admin()).json["events"]
    assert [e["action"] for e in events] == ["set_rollout", "set_rollout", "create"]
    promote = events[1]
    assert promote["actor"] == "controller"
    assert promote["token_name"] == "bootstrap-admin"
    assert promote["reason"] == "stage 2"
    assert (promote["before"]["rollout"], promote["after"]["rollout"]) == (0, 50)
    assert events[0]["actor"] == "bootstrap-admin"


def test_rollout_with_stale_if_match_is_refused(client: FlaskClient) -> None:
    create_flag(client)
    response = client.put(
        "/api/admin/flags/checkout/rollout", json={"rollout": 10}, headers=admin(**{"If-Match": "7"})
    )
    assert response.status_code == 409


def test_kill_and_resume_are_idempotent(client: FlaskClient) -> None:
    create_flag(client, enabled=True, rollout=50)
    for _ in range(2):
        killed = client.post(
            "/api/admin/flags/checkout/kill",
            json={"reason": "error rate"},
            headers=admin("alertmanager:HighErrorRate"),
        )
        assert killed.status_code == 200
        assert (killed.json["enabled"], killed.json["state"]) == (False, "rolled_back")
    for _ in range(2):
        resumed = client.post("/api/admin/flags/checkout/resume", json={"reason": "fixed"}, headers=admin())
        assert (resumed.json["enabled"], resumed.json["state"], resumed.json["rollout"]) == (
            True,
            "rolling_out",
            50,
        )
    actions = [e["action"] for e in client.get("/api/admin/events", headers=admin()).json["events"]]
    assert actions == ["resume", "kill", "create"]


def test_rollout_on_killed_flag_keeps_it_rolled_back(client: FlaskClient) -> None:
    create_flag(client, enabled=True, rollout=10)
    client.post("/api/admin/flags/checkout/kill", json={"reason": "x"}, headers=admin())
    flag = client.put("/api/admin/flags/checkout/rollout", json={"rollout": 50}, headers=admin()).json
    assert (flag["enabled"], flag["state"], flag["rollout"]) == (False, "rolled_back", 50)


def test_delete_removes_flag_but_keeps_history(client: FlaskClient) -> None:
    create_flag(client)
    assert client.delete("/api/admin/flags/checkout?reason=done", headers=admin()).status_code == 204
    assert client.get("/api/admin/flags/checkout", headers=admin()).status_code == 404
    events = client.get("/api/admin/events?flag=checkout", headers=admin()).json["events"]
    assert events[0]["action"] == "delete"
    assert events[0]["reason"] == "done"


def test_events_filter_by_time_and_order(client: FlaskClient) -> None:
    create_flag(client, "a")
    create_flag(client, "b")
    everything = client.get("/api/admin/events?order=asc", headers=admin()).json["events"]
    assert [e["flag"] for e in everything] == ["a", "b"]
    since = everything[1]["time"]
    later = client.get(f"/api/admin/events?since={since}", headers=admin()).json["events"]
    assert "b" in [e["flag"] for e in later]
    assert client.get("/api/admin/events?limit=1", headers=admin()).json["events"][0]["flag"] == "b"
    bad = client.get("/api/admin/events?since=yesterday", headers=admin())
    assert bad.status_code == 422


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"key": "Bad Key"}, "key", id="key-pattern"),
        pytest.param({"key": "k", "rollout": 101}, "rollout", id="rollout-range"),
        pytest.param({"key": "k", "rollout": "50"}, "rollout", id="rollout-string"),
        pytest.param({"key": "k", "stages": [0, 50]}, "stages", id="stage-zero"),
        pytest.param({"key": "k", "state": "launched"}, "state", id="unknown-state"),
        pytest.param(
            {"key": "k", "guardrails": [{"metric": "cpu", "threshold": 1}]}, "guardrails", id="metric"
        ),
        pytest.param(
            {"key": "k", "guardrails": [{"metric": "error_rate", "op": "==", "threshold": 1}]},
            "guardrails",
            id="op",
        ),
        pytest.param(
            {"key": "k", "guardrails": [{"metric": "error_rate", "threshold": 1, "window_s": 0}]},
            "guardrails",
            id="window",
        ),
        pytest.param({"key": "k", "rollback": {"on_no_data": "panic"}}, "rollback", id="on-no-data"),
        pytest.param({"key": "k", "payload": [1, 2]}, "payload", id="payload-not-object"),
        pytest.param({"key": "k", "payload": {"blob": "x" * 20_000}}, "payload", id="payload-too-big"),
        pytest.param({"key": "k", "colour": "red"}, "colour", id="unknown-field"),
    ],
)
def test_invalid_flag_is_refused_with_field_messages(client: FlaskClient, body: dict, field: str) -> None:
    response = client.post("/api/admin/flags", json=body, headers=admin())
    assert response.status_code == 422
    error = response.json["error"]
    assert error["code"] == "validation_failed"
    assert field in error["details"]["json"]


def test_malformed_json_is_a_400(client: FlaskClient) -> None:
    response = client.post(
        "/api/admin/flags", data="{not json", headers=admin(**{"Content-Type": "application/json"})
    )
    assert response.status_code == 400
    assert response.json["error"]["code"] == "malformed_json"


def test_oversized_body_is_a_413(client: FlaskClient) -> None:
    body = '{"key": "k", "description": "' + "x" * 2_000_000 + '"}'
    response = client.post(
        "/api/admin/flags", data=body, headers=admin(**{"Content-Type": "application/json"})
    )
    assert response.status_code == 413
    assert response.json["error"]["code"] == "payload_too_large"


def test_missing_token_is_401_and_client_token_is_403(client: FlaskClient) -> None:
    anonymous = client.post("/api/admin/flags", json={"key": "k"})
    assert anonymous.status_code == 401
    assert anonymous.json["error"]["code"] == "unauthenticated"
    assert client.get("/api/admin/flags", headers=sdk()).status_code == 403
    assert client.get("/api/admin/flags", headers={"Authorization": "wrong"}).status_code == 401


def test_bearer_prefix_is_accepted(client: FlaskClient) -> None:
    response = client.get("/api/admin/flags", headers={"Authorization": "Bearer admin-test-token"})
    assert response.status_code == 200


def test_unknown_route_and_flag_answer_json_404(client: FlaskClient) -> None:
    assert client.get("/nope").json["error"]["code"] == "not_found"
    missing = client.get("/api/admin/flags/nope", headers=admin())
    assert (missing.status_code, missing.json["error"]["code"]) == (404, "flag_not_found")


def test_bad_actor_header_is_refused(client: FlaskClient) -> None:
    response = client.post("/api/admin/flags", json={"key": "k"}, headers=admin("x" * 300))
    assert response.status_code == 400


def test_repeated_failed_authentication_is_rate_limited(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, flags_auth_failures_per_minute=3, flags_auth_failures_per_address_per_minute=3
    )
    prepare(settings)
    client = create_app(settings).test_client()
    statuses = [
        client.get("/api/admin/flags", headers={"Authorization": f"guess-{i}"}).status_code for i in range(5)
    ]
    assert statuses == [401, 401, 401, 429, 429]
    limited = client.get("/api/admin/flags", headers={"Authorization": "guess-5"})
    assert limited.status_code == 429
    assert limited.json["error"]["code"] == "too_many_requests"
    assert limited.headers["Retry-After"] == "60"
    # Others' failures never throttle a valid token.
    assert client.get("/api/admin/flags", headers=admin()).status_code == 200


def test_concurrent_writes_at_one_version_let_exactly_one_through(app: Flask) -> None:
    create_flag(app.test_client())
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def patch(n: int) -> None:
        client = app.test_client()
        barrier.wait()
        response = client.patch(
            "/api/admin/flags/checkout",
            json={"description": f"writer {n}"},
            headers=admin(**{"If-Match": "1"}),
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=patch, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] + [409] * 7
    assert app.test_client().get("/api/admin/flags/checkout", headers=admin()).json["version"] == 2
