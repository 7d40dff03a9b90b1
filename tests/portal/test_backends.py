"""The portal over real components: PostgreSQL as its database, the flag service as its gate."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
import sqlalchemy

from portal import data
from portal.db import make_engine
from portal.settings import FLAG_KEY
from rollguard import free_port
from tests.portal.conftest import SMALL, portal, seed_database, start_portal
from tests.support import wait_until

pytestmark = pytest.mark.integration


def test_portal_on_postgresql_reads_its_writes_and_counts_queries(make_app, fresh_postgres_url):
    url = seed_database(fresh_postgres_url)
    app = make_app(database_url=url, optimize=True, pool_size=5)
    client = app.test_client()
    first = client.get("/api/pages/my-test-series?student_id=9").get_json()
    assert len(first["series"]) == 12 and all(len(s["attempts"]) == 2 for s in first["series"])
    attempt = client.post("/api/exam/submit", json={"student_id": 9, "exam_id": 12, "score": 77}).get_json()
    assert attempt["series_id"] == 3
    page = client.get("/api/pages/exam-home?student_id=9&series_id=3").get_json()
    assert page["attempts"][-1] == attempt["attempt"]
    direct = make_app(database_url=url, optimize=False, pool_size=5).test_client()
    assert (
        direct.get("/api/pages/exam-home?student_id=9&series_id=3").get_json()["attempts"] == page["attempts"]
    )
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "portal_db_pool_size 5.0" in metrics
    queries = [line for line in metrics.splitlines() if line.startswith("portal_db_queries_total")]
    assert float(queries[0].split()[-1]) >= 2
    assert portal(app).engine.dialect.name == "postgresql"


def _optimizer_counts(app) -> tuple[int, int]:
    stats = portal(app).optimizer.stats()
    return stats["backend_calls"]["optimized"], stats["batch_keys"]


@pytest.mark.parametrize("write_through", [True, False], ids=["write-through", "invalidate"])
def test_a_submit_on_postgresql_reads_back_the_page_it_leads_to(make_app, fresh_postgres_url, write_through):
    url = seed_database(fresh_postgres_url)
    app = make_app(database_url=url, optimize=True, write_through=write_through)
    client = app.test_client()
    client.get("/api/pages/exam-home?student_id=9&series_id=1")  # one key cached before the submit
    calls_before = _optimizer_counts(app)

    attempt = client.post("/api/exam/submit", json={"student_id": 9, "exam_id": 12, "score": 77}).get_json()
    page = client.get("/api/pages/my-test-series?student_id=9").get_json()

    series = {s["series_id"]: s["attempts"] for s in page["series"]}
    assert series[3][-1] == attempt["attempt"]
    direct = make_app(database_url=url, optimize=False).test_client()
    assert direct.get("/api/pages/my-test-series?student_id=9").get_json()["series"] == page["series"]
    # Either way one read of the 11 keys that were not cached (9:1 was): with write-through the
    # INSERT's, and the page missed none of its 12 keys; without, the page's own after 11 misses.
    assert _optimizer_counts(app) == (calls_before[0] + 1, calls_before[1] + 11)
    assert portal(app).optimizer.stats()["misses"] == 1 + (0 if write_through else 11)


def _paths(portal_url: str, students: range) -> set[str]:
    return {
        httpx.get(f"{portal_url}/api/pages/my-test-series?student_id={s}").headers["X-Rollguard-Path"]
        for s in students
    }


def test_flag_rollout_moves_every_student_between_paths(tmp_path, flag_service):
    admin = flag_service.admin(actor="portal-test")
    admin.create_flag(FLAG_KEY, enabled=True, rollout=0)
    url = seed_database(f"sqlite:///{tmp_path / 'portal.db'}")
    live = start_portal(
        tmp_path,
        database_url=url,
        optimize=False,
        extra_env={
            "ROLLGUARD_FLAGS_URL": flag_service.url,
            "ROLLGUARD_CLIENT_TOKEN": flag_service.client_token,
            "ROLLGUARD_PORTAL_FLAGS_REFRESH_S": "1",
        },
    )
    students = range(1, 41)
    try:
        assert httpx.get(f"{live.url}/api/portal/info").json()["gate"] == "unleash"
        assert _paths(live.url, students) == {"direct"}
        admin.set_rollout(FLAG_KEY, 100, reason="test: everyone")
        wait_until(
            lambda: _paths(live.url, range(1, 2)) == {"optimized"}, timeout=20, what="rollout 100 served"
        )
        assert _paths(live.url, students) == {"optimized"}
        admin.set_rollout(FLAG_KEY, 50, reason="test: half")
        wait_until(
            lambda: _paths(live.url, students) == {"optimized", "direct"}, timeout=20, what="rollout 50"
        )
        sticky = [_paths(live.url, range(s, s + 1)) for s in students]
        assert sticky == [_paths(live.url, range(s, s + 1)) for s in students]
        admin.set_rollout(FLAG_KEY, 0, reason="test: nobody")
        # Every student, not one: at 50% some were direct already.
        wait_until(lambda: _paths(live.url, students) == {"direct"}, timeout=20, what="rollout 0 served")
    finally:
        live.process.terminate()
        admin.close()


def test_a_submission_on_one_instance_is_seen_by_the_next_page_on_another(make_app, redis_url):
    namespace = f"portal-test-{uuid.uuid4().hex[:8]}"
    first = make_app(optimize=True, redis_url=redis_url, redis_namespace=namespace).test_client()
    second = make_app(optimize=True, redis_url=redis_url, redis_namespace=namespace).test_client()
    page = "/api/pages/exam-home?student_id=11&series_id=6"
    assert first.get(page).get_json()["attempts"] == second.get(page).get_json()["attempts"]
    assert second.get(page).get_json()["path"] == "optimized"

    submitted = first.post("/api/exam/submit", json={"student_id": 11, "exam_id": 27, "score": 64}).get_json()

    shown = second.get(page).get_json()
    assert shown["attempts"][-1] == submitted["attempt"]
    assert all(w["last_attempt_id"] == submitted["attempt"]["id"] for w in shown["widgets"])


def test_unreachable_flag_service_sends_everyone_direct(make_app):
    app = make_app(flags_url=f"http://127.0.0.1:{free_port()}", client_token="unused", optimize=True)
    response = app.test_client().get("/api/pages/my-test-series?student_id=3")
    assert response.status_code == 200
    assert response.headers["X-Rollguard-Path"] == "direct"
    assert app.test_client().get("/api/portal/info").get_json()["gate"] == "unleash"
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'optimizer_gate_bypass_total{fn="get_all_exam_attempts",reason="flag_unavailable"}' in metrics


def _terminate_backends(postgres_url: str) -> int:
    """End every server process of this database but our own: what a restart or an operator's kill does."""
    engine = sqlalchemy.create_engine(postgres_url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            ended = conn.execute(
                sqlalchemy.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
        return int(ended)
    finally:
        engine.dispose()


@pytest.mark.parametrize("optimize", [True, False], ids=["optimized", "direct"])
def test_pages_survive_terminated_database_connections(make_app, fresh_postgres_url, optimize):
    url = seed_database(fresh_postgres_url)
    app = make_app(database_url=url, optimize=optimize, pool_size=3)
    client = app.test_client()
    # Used a moment ago, so handed out without a ping: the read itself finds the connection gone.
    assert client.get("/api/pages/my-test-series?student_id=3").status_code == 200
    assert _terminate_backends(url) >= 1
    page = client.get("/api/pages/my-test-series?student_id=4")
    assert page.status_code == 200, page.get_json()
    assert len(page.get_json()["series"]) == 12
    submit = {"student_id": 4, "exam_id": 12, "score": 5}
    submitted = client.post("/api/exam/submit", json=submit)
    if optimize:
        # The optimizer read through its own connections: the submit is the first to find the pool's
        # connection gone, and a write is not retried in the request (it may have been done).
        assert submitted.status_code == 503 and submitted.headers["Retry-After"]
        assert (
            len(client.get("/api/pages/my-test-series?student_id=4").get_json()["series"][11]["attempts"])
            == 2
        )
        submitted = client.post("/api/exam/submit", json=submit)
    assert submitted.status_code == 201


def test_an_idle_pooled_connection_is_checked_and_replaced_before_use(fresh_postgres_url):
    url = seed_database(fresh_postgres_url)
    engine = make_engine(url, pool_size=1, idle_ping_s=0.0)  # every checkout counts as idle
    statements: list[str] = []
    replaced: list[object] = []
    sqlalchemy.event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    sqlalchemy.event.listen(engine.pool, "invalidate", lambda *args: replaced.append(args[2]))
    try:
        assert data.load_catalog(engine).max_student_id > 0
        assert _terminate_backends(url) >= 1
        statements.clear()
        assert len(data.get_all_exam_attempts(engine, 1, 1)) == 2
        # The ping found the connection dead and the pool replaced it: the read ran once, not retried.
        assert len(replaced) == 1
        assert len(statements) == 1
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_a_batch_of_attempts_is_returned_in_the_order_given(backend, fresh_postgres_url, tmp_path):
    url = fresh_postgres_url if backend == "postgresql" else f"sqlite:///{tmp_path / 'portal.db'}"
    url = seed_database(url)
    statements: list[None] = []
    engine = make_engine(url, on_query=lambda: statements.append(None))
    catalog = data.load_catalog(engine)
    now = datetime.now(UTC).replace(microsecond=123_999)
    india = timezone(timedelta(hours=5, minutes=30))
    # Students in no particular order, two for one student and series: the order given is kept.
    # The times keep their instant whatever their offset, to the millisecond.
    wanted = [
        data.NewAttempt(
            student,
            series,
            catalog.exams[series][0],
            score,
            (now + timedelta(milliseconds=score)).astimezone(zone),
        )
        for student, series, score, zone in (
            (7, 2, 10, UTC),
            (3, 5, 20, india),
            (7, 2, 30, UTC),
            (1, 12, 40, india),
            (9, 1, 50, UTC),
        )
    ]
    try:
        statements.clear()
        recorded = data.record_attempts(engine, wanted)
        if backend == "postgresql":
            assert len(statements) == 1  # one statement in autocommit, whatever the batch's size
        assert [row[2] for row in recorded] == [10, 20, 30, 40, 50]
        for attempt, row in zip(wanted, recorded, strict=True):
            stored = data.get_all_exam_attempts(engine, attempt.student_id, attempt.series_id)
            assert row in stored
        assert len({row[0] for row in recorded}) == 5
    finally:
        engine.dispose()


def test_a_batched_read_on_sqlite_equals_the_reads_one_by_one_and_searches_the_index(tmp_path):
    url = seed_database(f"sqlite:///{tmp_path / 'portal.db'}")
    engine = make_engine(url)
    sent: list[tuple[str, object]] = []
    sqlalchemy.event.listen(
        engine,
        "before_cursor_execute",
        lambda _c, _cur, statement, params, *_: sent.append((statement, params)),
    )
    # Keys out of order, one repeated, one of a student with no attempts in that series.
    keys = ["7:2", "3:5", "7:2", "1:12", "9:1", "4:3", f"{SMALL.students + 5}:1"]
    try:
        batched = data.get_exam_attempts_many(engine, keys)
        assert len(sent) == 1
        statement, params = sent[0]
        assert batched == {key: data.get_all_exam_attempts(engine, *data.parse_key(key)) for key in keys}
        assert batched[f"{SMALL.students + 5}:1"] == ()
        with engine.connect() as conn:
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params).all()  # type: ignore[arg-type]
        assert any("USING INDEX ix_attempts_student_series" in str(row) for row in plan), plan
    finally:
        engine.dispose()
