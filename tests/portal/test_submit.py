"""Submissions write an attempt and invalidate the student's cached attempts before answering."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from portal.data import count_attempts
from tests.portal.conftest import portal


def test_next_page_after_submit_shows_the_attempt(make_app):
    app = make_app(optimize=True)
    client = app.test_client()
    before = client.get("/api/pages/exam-home?student_id=4&series_id=2").get_json()
    again = client.get("/api/pages/exam-home?student_id=4&series_id=2").get_json()
    assert again["attempts"] == before["attempts"]
    misses = portal(app).optimizer.stats()["misses"]

    response = client.post("/api/exam/submit", json={"student_id": 4, "exam_id": 7, "score": 88})
    assert response.status_code == 201
    attempt = response.get_json()["attempt"]
    assert response.get_json()["invalidated"] == "4:2"  # exam 7 is in series 2

    after = client.get("/api/pages/exam-home?student_id=4&series_id=2").get_json()
    assert after["attempts"][-1] == attempt
    assert all(w["last_attempt_id"] == attempt["id"] for w in after["widgets"])
    assert portal(app).optimizer.stats()["misses"] == misses + 1
    series = client.get("/api/pages/my-test-series?student_id=4").get_json()["series"]
    assert attempt in series[1]["attempts"]


def test_a_submit_drops_only_its_own_series_and_the_next_page_reloads_just_that_key(make_app):
    app = make_app(optimize=True)
    client = app.test_client()
    client.get("/api/pages/my-test-series?student_id=5")
    stats = portal(app).optimizer.stats()
    submitted = client.post("/api/exam/submit", json={"student_id": 5, "exam_id": 7, "score": 91}).get_json()
    page = client.get("/api/pages/my-test-series?student_id=5").get_json()
    after = portal(app).optimizer.stats()
    # Eleven of the twelve series are served from the cache; series 2 is read again and shows the attempt.
    assert after["misses"] - stats["misses"] == 1
    assert after["hits"] - stats["hits"] == 11
    assert submitted["attempt"] in page["series"][1]["attempts"]


def test_other_students_stay_cached_after_a_submit(make_app):
    app = make_app(optimize=True)
    client = app.test_client()
    client.get("/api/pages/my-test-series?student_id=5")
    client.post("/api/exam/submit", json={"student_id": 6, "exam_id": 1, "score": 10})
    misses = portal(app).optimizer.stats()["misses"]
    client.get("/api/pages/my-test-series?student_id=5")
    assert portal(app).optimizer.stats()["misses"] == misses


def test_concurrent_submissions_are_all_visible_to_their_students(make_app):
    app = make_app(optimize=True)
    students = list(range(1, 41))

    def submit_then_reload(student: int) -> tuple[int, list[int]]:
        client = app.test_client()
        client.get(f"/api/pages/my-test-series?student_id={student}")
        attempt = client.post("/api/exam/submit", json={"student_id": student, "exam_id": 3, "score": 50})
        page = client.get(f"/api/pages/my-test-series?student_id={student}").get_json()
        return attempt.get_json()["attempt"]["id"], [a["id"] for a in page["series"][0]["attempts"]]

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(submit_then_reload, students))
    assert all(attempt_id in shown for attempt_id, shown in results)
    assert count_attempts(portal(app).engine, students) == 40 * 12 * 2 + 40


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param({"student_id": 1, "exam_id": 1}, 422, "invalid_input", id="missing-score"),
        pytest.param({"student_id": 1, "exam_id": 1, "score": 101}, 422, "invalid_input", id="score-range"),
        pytest.param({"student_id": "1", "exam_id": 1, "score": 5}, 422, "invalid_input", id="string-id"),
        pytest.param(
            {"student_id": 1, "exam_id": 1, "score": 5, "x": 1}, 422, "invalid_input", id="extra-field"
        ),
        pytest.param({"student_id": 1, "exam_id": 999, "score": 5}, 404, "unknown_exam", id="unknown-exam"),
        pytest.param(
            {"student_id": 999, "exam_id": 1, "score": 5}, 404, "unknown_student", id="unknown-student"
        ),
        pytest.param([1, 2], 422, "invalid_input", id="not-an-object"),
    ],
)
def test_bad_submissions_are_refused_and_write_nothing(make_app, body, status, code):
    app = make_app(optimize=True)
    before = count_attempts(portal(app).engine)
    response = app.test_client().post("/api/exam/submit", json=body)
    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code
    assert count_attempts(portal(app).engine) == before


def test_non_json_submission_is_a_400(make_app):
    response = make_app().test_client().post("/api/exam/submit", data="score=5", content_type="text/plain")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_json"
