"""The batch endpoint: one batched read, bounded in size, rate limited and concurrency capped."""

from __future__ import annotations

import threading

import pytest

from portal.data import get_all_exam_attempts, render_attempts
from tests.portal.conftest import portal
from tests.support import wait_until

TOKEN = "batch-admin-token"


def test_batch_reads_every_key_with_one_backend_query(make_app):
    app = make_app(optimize=True)
    response = app.test_client().post("/api/exam/batch-attempts", json={"student_ids": [3, 4]})
    assert response.status_code == 200
    body = response.get_json()
    assert body["path"] == "optimized"
    assert sorted(body["attempts"]) == sorted(f"{s}:{series}" for s in (3, 4) for series in range(1, 13))
    assert body["attempts"]["4:7"] == render_attempts(get_all_exam_attempts(portal(app).engine, 4, 7))
    stats = portal(app).optimizer.stats()
    assert stats["batch_calls"] == 1 and stats["batch_keys"] == 24


def test_batch_by_keys_matches_the_direct_path(make_app):
    keys = ["1:1", "2:5", "9:12", "1:1"]
    fast = make_app(optimize=True).test_client().post("/api/exam/batch-attempts", json={"keys": keys})
    slow = make_app(optimize=False).test_client().post("/api/exam/batch-attempts", json={"keys": keys})
    assert fast.headers["X-Rollguard-Path"] == "optimized" and slow.headers["X-Rollguard-Path"] == "direct"
    assert fast.get_json()["attempts"] == slow.get_json()["attempts"]
    assert len(fast.get_json()["attempts"]) == 3


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param({"student_ids": list(range(1, 10))}, 413, id="too-many-students"),
        pytest.param({"keys": [f"{i}:1" for i in range(1, 32)]}, 413, id="too-many-keys"),
        pytest.param({}, 422, id="neither"),
        pytest.param({"student_ids": [1], "keys": ["1:1"]}, 422, id="both"),
        pytest.param({"keys": ["1-1"]}, 422, id="malformed-key"),
        pytest.param({"student_ids": [0]}, 422, id="zero-student"),
        pytest.param({"student_ids": "1,2"}, 422, id="not-a-list"),
    ],
)
def test_batch_bounds_and_validation(make_app, body, status):
    response = (
        make_app(optimize=True, batch_max_keys=30).test_client().post("/api/exam/batch-attempts", json=body)
    )
    assert response.status_code == status
    assert set(response.get_json()["error"]) == {"code", "message", "details"}


def test_batch_over_the_rate_limit_gets_429(make_app):
    client = make_app(optimize=True, batch_rate_limit="3/minute").test_client()
    statuses = [client.post("/api/exam/batch-attempts", json={"keys": ["1:1"]}).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    response = client.post("/api/exam/batch-attempts", json={"keys": ["1:1"]})
    assert response.get_json()["error"]["code"] == "rate_limited"


def test_batch_beyond_the_concurrency_cap_gets_429(make_app):
    app = make_app(optimize=True, batch_concurrency=1, admin_token=TOKEN)
    client = app.test_client()
    # A slow optimized path holds the only slot while the second request arrives.
    client.post(
        "/api/admin/fault", json={"error_rate": 0, "latency_ms": 3000}, headers={"Authorization": TOKEN}
    )
    first: list[int] = []
    holder = threading.Thread(
        target=lambda: first.append(
            app.test_client().post("/api/exam/batch-attempts", json={"keys": ["1:1"]}).status_code
        )
    )
    holder.start()
    try:
        wait_until(
            lambda: "portal_batch_in_flight 1.0" in client.get("/metrics").get_data(as_text=True),
            timeout=10,
            what="first batch in flight",
        )
        second = client.post("/api/exam/batch-attempts", json={"keys": ["2:2"]})
        assert second.status_code == 429
        assert second.get_json()["error"]["code"] == "concurrency_limited"
        client.delete("/api/admin/fault", headers={"Authorization": TOKEN})
    finally:
        holder.join(timeout=30)
    assert first == [200]
    assert client.post("/api/exam/batch-attempts", json={"keys": ["2:2"]}).status_code == 200
