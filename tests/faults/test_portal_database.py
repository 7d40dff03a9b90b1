"""The portal on a PostgreSQL that restarts or loses its backends: 503 with Retry-After, never 500, nothing lost.

Two portal workers (no Redis: their caches are kept consistent by PostgreSQL
LISTEN/NOTIFY) serve from a private cluster that the tests really restart, or
whose backends they terminate, while students submit; every acknowledged
submission must show on every page load that follows, each on a fresh
connection, and the same processes must serve again afterwards. In-process,
a backend terminated just as one statement is about to run shows a page or a
batch read run again on a fresh connection, and a submit answer 503 without
storing its attempt.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy
from flask import Flask

from portal.app import create_app
from portal.peercache import PeerCache
from portal.settings import PortalSettings
from tests.faults.components import ConnectionCutter, PrivatePostgres
from tests.faults.staleness import (
    Tally,
    load_pages,
    lost_submissions,
    recovery_seconds,
    run_during,
    submit_and_check,
)
from tests.portal.conftest import LivePortal, portal, seed_database, start_portal
from tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STUDENTS = list(range(1, 25))
EXAM = 1


def _terminate_for_two_seconds(cluster: PrivatePostgres) -> None:
    for _ in range(20):
        cluster.terminate_backends()
        threading.Event().wait(
            0.1
        )  # the pace of the fault (room for requests between cuts), not a synchronisation


FAULTS: dict[str, Callable[[PrivatePostgres], None]] = {
    "restart": PrivatePostgres.restart,
    "terminate-backends": _terminate_for_two_seconds,
}


def _start(tmp_path: Path, cluster: PrivatePostgres, *, optimize: bool) -> LivePortal:
    return start_portal(tmp_path, database_url=seed_database(cluster.url), optimize=optimize, workers=2)


def _assert_honest(tally: Tally) -> None:
    assert set(tally.statuses) <= {200, 201, 503}, tally.statuses
    assert tally.no_retry_after == 0, tally


@pytest.mark.parametrize(
    ("path", "fault"),
    [
        pytest.param("optimized", "restart", id="optimized-restart"),
        pytest.param("optimized", "terminate-backends", id="optimized-terminate-backends"),
        # Direct, every page reads the database: the reads a lost connection cut are run once more.
        pytest.param("direct", "terminate-backends", id="direct-terminate-backends"),
    ],
)
def test_submits_during_a_database_fault_are_acknowledged_or_503(
    tmp_path: Path, private_postgres: PrivatePostgres, path: str, fault: str
) -> None:
    live = _start(tmp_path, private_postgres, optimize=path == "optimized")
    try:
        # Direct pages cost a dozen queries each: fewer students keep the test short on a busy machine.
        _submits_during(live, private_postgres, fault, STUDENTS if path == "optimized" else STUDENTS[:8])
    finally:
        live.process.terminate()


def _submits_during(
    live: LivePortal, private_postgres: PrivatePostgres, fault: str, students: list[int]
) -> None:
    warm = Tally()
    for student in students:
        load_pages(live.url, student, count=4, tally=warm)
    assert warm.errors == 0, warm
    during = Tally()
    run_during(
        lambda: FAULTS[fault](private_postgres),
        lambda student: submit_and_check(live.url, student, exam_id=EXAM, samples=6, tally=during),
        students=students,
    )
    _assert_honest(during)
    assert during.stale_reads == 0, during
    # The same processes serve again: no restart of the portal.
    assert recovery_seconds(live.url, len(students) + 1, exam_id=EXAM) < 30
    assert live.process.running
    after = Tally()
    for student in students:
        submit_and_check(live.url, student, exam_id=EXAM, samples=4, tally=after)
    assert after.errors == 0 and after.stale_reads == 0, after
    assert lost_submissions(live.url, during) == 0


@pytest.fixture
def two_workers(tmp_path: Path, fresh_postgres_url: str) -> Iterator[tuple[Flask, Flask, str]]:
    """Two portal apps (two workers) on one PostgreSQL database, and that database's name."""
    database = seed_database(fresh_postgres_url)
    apps = [
        create_app(
            PortalSettings(
                database_url=database, var_dir=tmp_path / f"var-{i}", optimize=True, invalidation_timeout_s=20
            )
        )
        for i in range(2)
    ]
    yield apps[0], apps[1], database.rpartition("/")[2]
    for app in apps:
        portal(app).close()


def _attempt_ids(app: Flask, student_id: int) -> set[int]:
    response = app.test_client().get("/api/pages/my-test-series", query_string={"student_id": student_id})
    assert response.status_code == 200, response.get_data(as_text=True)
    return {attempt["id"] for series in response.json["series"] for attempt in series["attempts"]}


def test_a_worker_that_stopped_listening_serves_nothing_cached(
    two_workers: tuple[Flask, Flask, str], postgres_url: str
) -> None:
    submitter, deaf, name = two_workers
    _attempt_ids(submitter, 7)
    _attempt_ids(deaf, 7)  # cached on the worker about to lose its listening connection
    admin = sqlalchemy.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            # Connections already open keep working; the lost listener cannot come back meanwhile.
            conn.execute(sqlalchemy.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(
                sqlalchemy.text("SELECT pg_terminate_backend(:pid)"),
                {"pid": portal(deaf).invalidations.listener_pid},
            )
        cache = portal(deaf).optimizer.cache
        assert isinstance(cache, PeerCache)
        wait_until(lambda: not cache.serving, what="the worker to notice its lost listener")
        _attempt_ids(deaf, 7)  # read while not listening: from the database, and not kept
        submitted = submitter.test_client().post(
            "/api/exam/submit", json={"student_id": 7, "exam_id": 1, "score": 5}
        )
        # Acknowledged without the deaf worker, which is not there to confirm.
        assert submitted.status_code == 201, submitted.json
        assert submitted.json["attempt"]["id"] in _attempt_ids(deaf, 7)
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()
    wait_until(lambda: cache.serving, what="the worker to listen again")
    assert submitted.json["attempt"]["id"] in _attempt_ids(deaf, 7)


def test_a_worker_whose_listener_has_not_yet_read_its_lost_connection_serves_nothing_cached(
    two_workers: tuple[Flask, Flask, str], postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other worker stops waiting for it once its backend is gone, before its listener thread knows."""
    submitter, slow, _name = two_workers
    _attempt_ids(submitter, 7)
    cached = _attempt_ids(slow, 7)
    bus = portal(slow).invalidations
    assert bus is not None
    applying, release = threading.Event(), threading.Event()
    apply = bus._apply

    def busy_apply(tag: str) -> None:  # the listener thread, held up applying another invalidation
        applying.set()
        release.wait(30)
        apply(tag)

    monkeypatch.setattr(bus, "_apply", busy_apply)
    other = threading.Thread(
        target=lambda: submitter.test_client().post(
            "/api/exam/submit", json={"student_id": 8, "exam_id": 1, "score": 5}
        )
    )
    other.start()
    try:
        assert applying.wait(20), "the slow worker's listener never got the invalidation"
        _terminate(postgres_url, bus.listener_pid)
        cache = portal(slow).optimizer.cache
        assert isinstance(cache, PeerCache) and cache.serving  # its listener has not read the loss
        submitted = submitter.test_client().post(
            "/api/exam/submit", json={"student_id": 7, "exam_id": 1, "score": 6}
        )
        assert submitted.status_code == 201, submitted.json
        assert cache.serving
        seen = _attempt_ids(slow, 7)
        assert submitted.json["attempt"]["id"] in seen and cached < seen
    finally:
        release.set()
        other.join(timeout=30)
    wait_until(lambda: cache.serving and bus.caught_up(), what="the worker to listen again")


@contextmanager
def _connections_refused(admin_url: str, database: str) -> Iterator[Callable[[], None]]:
    """Refuse new connections to `database` (open ones keep working); yields what allows them again."""
    admin = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")

    def allow(value: str) -> None:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {value}'))

    allow("false")
    try:
        yield lambda: allow("true")
    finally:
        allow("true")
        admin.dispose()


def _terminate(admin_url: str, pid: int) -> None:
    admin = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": pid})
    admin.dispose()


def test_a_worker_sends_an_invalidation_only_while_it_can_hear_the_acknowledgements(
    two_workers: tuple[Flask, Flask, str], postgres_url: str
) -> None:
    submitter, peer, name = two_workers
    _attempt_ids(peer, 9)
    with _connections_refused(postgres_url, name) as allow:
        _terminate(postgres_url, portal(submitter).invalidations.listener_pid)
        cache = portal(submitter).optimizer.cache
        assert isinstance(cache, PeerCache)
        wait_until(lambda: not cache.serving, what="the submitter to notice its lost listener")
        # Its listener may come back a second into the submit (the length of the fault).
        threading.Timer(1.0, allow).start()
        submitted = submitter.test_client().post(
            "/api/exam/submit", json={"student_id": 9, "exam_id": 1, "score": 5}
        )
    assert submitted.status_code == 201, submitted.json
    assert submitted.json["attempt"]["id"] in _attempt_ids(peer, 9)


@pytest.fixture
def direct_app(tmp_path: Path, fresh_postgres_url: str) -> Iterator[Flask]:
    """One portal app on PostgreSQL, every page read from the database."""
    database = seed_database(fresh_postgres_url)
    app = create_app(PortalSettings(database_url=database, var_dir=tmp_path / "var", optimize=False))
    yield app
    portal(app).close()


@contextmanager
def _cut_once(app: Flask, statement: str) -> Iterator[ConnectionCutter]:
    cutter = ConnectionCutter(portal(app).engine, statement)
    try:
        yield cutter
    finally:
        cutter.close()


def test_a_page_cut_mid_request_is_read_again_on_a_fresh_connection(direct_app: Flask) -> None:
    expected = _attempt_ids(direct_app, 3)
    with _cut_once(direct_app, "FROM attempts") as cutter:
        assert _attempt_ids(direct_app, 3) == expected
    # Direct, the page reads each of its 12 series on its own: the one cut ran once more.
    assert cutter.cut == 1 and cutter.runs == 12 + 1, cutter.runs


def test_a_batch_read_cut_mid_request_is_read_again(direct_app: Flask) -> None:
    client = direct_app.test_client()
    with _cut_once(direct_app, "FROM attempts") as cutter:
        response = client.post("/api/exam/batch-attempts", json={"student_ids": [3]})
    assert cutter.cut == 1
    assert response.status_code == 200, response.json


def test_a_submit_cut_mid_request_is_a_503_and_stores_nothing(direct_app: Flask) -> None:
    before = _attempt_ids(direct_app, 3)
    with _cut_once(direct_app, "INSERT INTO attempts") as cutter:
        response = direct_app.test_client().post(
            "/api/exam/submit", json={"student_id": 3, "exam_id": 1, "score": 50}
        )
    assert cutter.cut == 1
    assert response.status_code == 503, response.json
    assert response.headers["Retry-After"] == "1"
    assert response.json["error"]["code"] == "database_unavailable"
    assert _attempt_ids(direct_app, 3) == before
