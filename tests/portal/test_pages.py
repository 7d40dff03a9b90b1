"""The page endpoints reproduce the incident's call patterns and report what they read and how."""

from __future__ import annotations

import os

import pytest

from portal import promtext
from portal.pages import EXAM_HOME_STEPS
from portal.scenarios import EXAM_HOME_STEPS as PLANNED_STEPS
from tests.portal.conftest import portal


def test_my_test_series_makes_one_call_per_series(make_app):
    app = make_app(optimize=False)
    response = app.test_client().get("/api/pages/my-test-series?student_id=7")
    assert response.status_code == 200
    body = response.get_json()
    assert body["calls"] == [f"7:{s}" for s in range(1, 13)]
    assert [s["series_id"] for s in body["series"]] == list(range(1, 13))
    assert all(len(s["attempts"]) == 2 for s in body["series"])
    assert response.headers["X-Rollguard-Path"] == body["path"] == "direct"


def test_exam_home_session_makes_twelve_to_fifteen_calls(make_app):
    client = make_app(optimize=True).test_client()
    calls = []
    for step in range(len(EXAM_HOME_STEPS)):
        body = client.get(f"/api/pages/exam-home?student_id=3&series_id=4&step={step}").get_json()
        assert body["path"] == "optimized"
        assert set(body["calls"]) == {"3:4"}
        calls += body["calls"]
    assert 12 <= len(calls) <= 15
    assert PLANNED_STEPS == len(EXAM_HOME_STEPS)


def test_optimized_pages_reach_the_backend_once_per_key(make_app):
    app = make_app(optimize=True)
    client = app.test_client()
    client.get("/api/pages/my-test-series?student_id=5")
    client.get("/api/pages/my-test-series?student_id=5")
    stats = portal(app).optimizer.stats()
    assert stats["requests"]["optimized"] == 24
    assert stats["misses"] == 12
    assert stats["hits"] == 12


def test_metrics_name_the_process_that_served_them_and_count_pool_checkouts(make_app):
    app = make_app(optimize=False)
    client = app.test_client()
    before = promtext.parse(client.get("/metrics").get_data(as_text=True))
    client.get("/api/pages/exam-home?student_id=5&series_id=1")
    after = promtext.parse(client.get("/metrics").get_data(as_text=True))
    assert after.total("portal_process_id") == os.getpid()
    # The direct page read the database through the pool: a checkout the scrapes' in-use gauge never saw.
    assert after.total("portal_db_pool_in_use") == 0
    assert after.total("portal_db_pool_checkouts_total") > before.total("portal_db_pool_checkouts_total")


def test_page_loads_are_counted_by_page_and_path(make_app):
    app = make_app(optimize=False)
    client = app.test_client()
    client.get("/api/pages/my-test-series?student_id=5")
    client.get("/api/pages/exam-home?student_id=5&series_id=1")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'portal_page_loads_total{page="my-test-series",path="direct"} 1.0' in text
    assert 'portal_page_loads_total{page="exam-home",path="direct"} 1.0' in text
    assert 'optimizer_requests_total{fn="get_all_exam_attempts",path="direct"} 15.0' in text
    assert "portal_db_pool_in_use 0.0" in text
    assert "process_resident_memory_bytes" in text


@pytest.mark.parametrize(
    ("url", "status", "code"),
    [
        pytest.param("/api/pages/my-test-series", 422, "invalid_input", id="missing-student"),
        pytest.param("/api/pages/my-test-series?student_id=x", 422, "invalid_input", id="non-numeric"),
        pytest.param("/api/pages/my-test-series?student_id=0", 422, "invalid_input", id="zero"),
        pytest.param("/api/pages/my-test-series?student_id=-3", 422, "invalid_input", id="negative"),
        pytest.param(
            "/api/pages/my-test-series?student_id=999", 404, "unknown_student", id="unknown-student"
        ),
        pytest.param(
            "/api/pages/exam-home?student_id=1&series_id=99", 404, "unknown_series", id="unknown-series"
        ),
        pytest.param(
            "/api/pages/exam-home?student_id=1&series_id=1&step=5", 422, "invalid_input", id="step-range"
        ),
        pytest.param("/api/pages/nope", 404, "not_found", id="unknown-page"),
    ],
)
def test_bad_page_requests_get_json_errors(make_app, url, status, code):
    response = make_app(optimize=True).test_client().get(url)
    assert response.status_code == status
    error = response.get_json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert "details" in error


def test_exhausted_pool_answers_503(make_app):
    app = make_app(optimize=False, pool_size=1, pool_timeout_s=0.2)
    held = portal(app).engine.connect()  # the only connection, held by the test
    try:
        response = app.test_client().get("/api/pages/exam-home?student_id=1&series_id=1")
        assert response.status_code == 503
        assert response.get_json()["error"]["code"] == "db_pool_exhausted"
        metrics = app.test_client().get("/metrics").get_data(as_text=True)
        assert "portal_db_pool_in_use 1.0" in metrics
        assert "portal_db_pool_in_use_max 1.0" in metrics
    finally:
        held.close()
    assert app.test_client().get("/api/pages/exam-home?student_id=1&series_id=1").status_code == 200


def test_the_optimized_path_reads_through_its_own_connections_when_the_pool_is_exhausted(make_app):
    app = make_app(optimize=True, pool_size=1, pool_timeout_s=0.2, optimizer_pool_size=2)
    client = app.test_client()
    portal(app).catalog()  # read once, at the first request
    held = portal(app).engine.connect()  # the direct path's flood, holding every connection of the pool
    try:
        for url in (
            "/api/pages/my-test-series?student_id=1",
            "/api/pages/exam-home?student_id=2&series_id=1",
        ):
            response = client.get(url)
            assert response.status_code == 200, response.get_json()
            assert response.get_json()["path"] == "optimized"
        metrics = client.get("/metrics").get_data(as_text=True)
        assert "portal_db_pool_in_use 1.0" in metrics
        assert "portal_db_optimizer_pool_size 2.0" in metrics
        assert portal(app).optimizer.stats()["batch_calls"] == 2
    finally:
        held.close()
    # Its connections are its cap: no more backend calls in flight than it has.
    assert portal(app).optimizer.config.max_concurrency == 2
