"""Invalidations between portal workers over PostgreSQL LISTEN/NOTIFY: applied everywhere before a submit returns."""

from __future__ import annotations

import threading

import httpx
import psycopg
import pytest

from portal.errors import InvalidationUnconfirmed
from portal.invalidation import NOTIFY_SQL, PgInvalidations
from tests.portal.conftest import seed_database, start_portal

pytestmark = pytest.mark.integration


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _publish(worker: PgInvalidations, tag: str, dsn: str) -> int:
    """Send `tag` in a statement of its own, as a group's INSERT sends its keys; the peers that confirmed."""
    notice = worker.notice([tag])
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(f"SELECT {NOTIFY_SQL}", notice.params).fetchone()
    assert row is not None
    worker.sent(notice, int(row[1]))
    return worker.confirm(notice)


def test_a_notice_is_confirmed_after_every_other_worker_applied_it(fresh_postgres_url):
    seen: list[str] = []
    others = [
        PgInvalidations(
            _dsn(fresh_postgres_url),
            channel="inv_test",
            apply=seen.append,
            listening=lambda _up: None,
            timeout_s=10,
        )
        for _ in range(2)
    ]
    own: list[str] = []
    publisher = PgInvalidations(
        _dsn(fresh_postgres_url),
        channel="inv_test",
        apply=own.append,
        listening=lambda _up: None,
        timeout_s=10,
    )
    try:
        assert _publish(publisher, "student:7", _dsn(fresh_postgres_url)) == 2
        assert seen == ["student:7", "student:7"] and own == []
    finally:
        for channel in [publisher, *others]:
            channel.close()


def test_concurrent_notices_are_each_confirmed_once_every_worker_applied_their_tag(fresh_postgres_url):
    seen: list[list[str]] = [[], []]
    others = [
        PgInvalidations(
            _dsn(fresh_postgres_url),
            channel="inv_burst",
            apply=seen[i].append,
            listening=lambda _up: None,
            timeout_s=10,
        )
        for i in range(2)
    ]
    publisher = PgInvalidations(
        _dsn(fresh_postgres_url),
        channel="inv_burst",
        apply=lambda _tag: None,
        listening=lambda _up: None,
        timeout_s=10,
    )
    tags = [f"student:{n}" for n in range(60)]
    returned: dict[str, set[str]] = {}

    def submit(tag: str) -> None:
        assert _publish(publisher, tag, _dsn(fresh_postgres_url)) == 2
        # Once confirmed, both other workers have dropped the tag.
        returned[tag] = {tag} & set(seen[0]) & set(seen[1])

    try:
        threads = [threading.Thread(target=submit, args=(tag,)) for tag in tags]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert returned == {tag: {tag} for tag in tags}
        assert sorted(seen[0]) == sorted(seen[1]) == sorted(tags)
    finally:
        for channel in [publisher, *others]:
            channel.close()


def test_a_worker_stays_caught_up_while_its_own_notifications_wait_unread(fresh_postgres_url):
    """Its own NOTIFYs come back to its listening connection: the request that finds them reads them itself."""
    states: list[bool] = []
    worker = PgInvalidations(
        _dsn(fresh_postgres_url), channel="inv_own", apply=lambda _tag: None, listening=states.append
    )
    try:
        answers = []
        for series in range(200):
            assert _publish(worker, f"1:{series}", _dsn(fresh_postgres_url)) == 0
            answers.append(worker.caught_up())
        assert answers.count(False) == 0
        assert states == [True]
    finally:
        worker.close()


def test_a_worker_that_does_not_confirm_in_time_fails_the_confirmation(fresh_postgres_url):
    release = threading.Event()

    def hang(_tag: str) -> None:
        release.wait(10)

    stuck = PgInvalidations(
        _dsn(fresh_postgres_url), channel="inv_stuck", apply=hang, listening=lambda _up: None
    )
    publisher = PgInvalidations(
        _dsn(fresh_postgres_url),
        channel="inv_stuck",
        apply=lambda _tag: None,
        listening=lambda _up: None,
        timeout_s=0.5,
    )
    try:
        with pytest.raises(InvalidationUnconfirmed, match="0 of 1 workers"):
            _publish(publisher, "student:1", _dsn(fresh_postgres_url))
    finally:
        release.set()
        publisher.close()
        stuck.close()


def test_two_workers_on_postgresql_show_a_submission_on_every_fresh_connection(tmp_path, fresh_postgres_url):
    url = seed_database(fresh_postgres_url)
    live = start_portal(tmp_path, database_url=url, optimize=True, workers=2)
    try:
        for student in range(1, 9):
            page = f"{live.url}/api/pages/my-test-series?student_id={student}"
            # Fresh connections spread over both workers, so both cache the student's attempts.
            for _ in range(6):
                assert httpx.get(page, timeout=10).status_code == 200
            response = httpx.post(
                f"{live.url}/api/exam/submit",
                json={"student_id": student, "exam_id": 3, "score": 50},
                timeout=10,
            )
            assert response.status_code == 201, response.text
            attempt = response.json()["attempt"]
            for _ in range(6):
                series = httpx.get(page, timeout=10).json()["series"]
                shown = {a["id"] for s in series if s["series_id"] == 1 for a in s["attempts"]}
                assert attempt["id"] in shown
    finally:
        live.process.terminate()


def test_a_worker_is_not_caught_up_once_its_backend_is_gone_even_before_its_listener_noticed(
    fresh_postgres_url,
):
    """The window a submit on another worker no longer waits for this one, but its listener has not read the loss."""
    import sqlalchemy

    from tests.support import wait_until

    applying, release = threading.Event(), threading.Event()
    states: list[bool] = []

    def slow_apply(_tag: str) -> None:
        applying.set()
        release.wait(30)

    peer = PgInvalidations(
        _dsn(fresh_postgres_url), channel="inv_lost", apply=slow_apply, listening=states.append, timeout_s=10
    )
    publisher = PgInvalidations(
        _dsn(fresh_postgres_url), channel="inv_lost", apply=lambda _tag: None, listening=lambda _up: None
    )
    sending = threading.Thread(
        target=lambda: _publish_quietly(publisher, "student:1", _dsn(fresh_postgres_url)), daemon=True
    )
    admin = sqlalchemy.create_engine(fresh_postgres_url, isolation_level="AUTOCOMMIT")
    try:
        assert peer.caught_up()
        sending.start()
        assert applying.wait(10), "the peer's listener never got the invalidation"
        listener = peer.listener_pid
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_terminate_backend(:pid)"), {"pid": listener})

        def gone() -> bool:
            with admin.connect() as conn:
                query = sqlalchemy.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
                return conn.execute(query, {"pid": listener}).scalar_one() == 0

        wait_until(gone, what="the terminated backend to leave pg_stat_activity")
        # Its listener thread is still applying: it has read nothing of the loss.
        assert states == [True]
        assert not peer.caught_up()
        release.set()
        wait_until(lambda: states == [True, False, True], what="the listener to notice and listen again")
        wait_until(peer.caught_up, what="the new listening connection to be caught up")
    finally:
        release.set()
        sending.join(timeout=20)
        for channel in (peer, publisher):
            channel.close()
        admin.dispose()


def _publish_quietly(publisher: PgInvalidations, tag: str, dsn: str) -> None:
    try:
        _publish(publisher, tag, dsn)
    except InvalidationUnconfirmed:
        pass  # the peer lost its connection mid-way: either outcome is fine here


def test_a_group_of_submits_tells_the_other_workers_in_its_own_insert(fresh_postgres_url):
    """One statement writes the attempt and sends the NOTIFY; the submit's confirmation waits for both peers."""
    import sqlalchemy

    from portal.data import get_all_exam_attempts
    from portal.db import make_engine
    from portal.submits import AttemptWriter

    url = seed_database(fresh_postgres_url)
    engine = make_engine(url)
    statements: list[str] = []
    sqlalchemy.event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    seen: list[str] = []
    peers = [
        PgInvalidations(_dsn(url), channel="inv_insert", apply=seen.append, listening=lambda _up: None)
        for _ in range(2)
    ]
    worker = PgInvalidations(_dsn(url), channel="inv_insert", apply=seen.append, listening=lambda _up: None)
    try:
        recorded = AttemptWriter(engine, invalidations=worker).record(
            student_id=2, series_id=1, exam_id=1, score=77
        )
        assert recorded.notice is not None
        assert worker.confirm(recorded.notice) == 2
        assert seen == ["2:1", "2:1"]  # each peer dropped the key once; the sender not at all
        assert len(statements) == 1
        assert "INSERT INTO attempts" in statements[0] and "pg_notify" in statements[0]
        assert recorded.row in get_all_exam_attempts(engine, 2, 1)
    finally:
        for channel in [worker, *peers]:
            channel.close()
        engine.dispose()


def test_a_worker_that_cannot_hear_acknowledgements_writes_no_attempt(fresh_postgres_url):
    """Its peers' confirmations would never reach it: the submit fails before anything is stored."""
    import sqlalchemy

    from portal.data import count_attempts
    from portal.db import make_engine
    from portal.submits import AttemptWriter
    from tests.support import wait_until

    url = seed_database(fresh_postgres_url)
    engine = make_engine(url)
    deaf, release = threading.Event(), threading.Event()

    def listening(up: bool) -> None:
        if not up:  # hold the listener thread here, between losing its connection and reconnecting
            deaf.set()
            release.wait(30)

    worker = PgInvalidations(
        _dsn(url), channel="inv_deaf", apply=lambda _t: None, listening=listening, timeout_s=0.5
    )
    admin = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_terminate_backend(:pid)"), {"pid": worker.listener_pid})
        wait_until(deaf.is_set, what="the listener to notice its connection is gone")
        before = count_attempts(engine)
        with pytest.raises(InvalidationUnconfirmed, match="not listening"):
            AttemptWriter(engine, invalidations=worker).record(student_id=2, series_id=1, exam_id=1, score=77)
        assert count_attempts(engine) == before
    finally:
        release.set()
        worker.close()
        admin.dispose()
        engine.dispose()


def test_a_listener_tells_whether_input_waits_without_reading_it(fresh_postgres_url):
    from portal.listening import Listener
    from tests.support import wait_until

    listener = Listener(
        _dsn(fresh_postgres_url), application_name="rg_pending_test", channels=("inv_pending",)
    )
    try:
        assert not listener.pending()
        with psycopg.connect(_dsn(fresh_postgres_url), autocommit=True) as conn:
            conn.execute("SELECT pg_notify('inv_pending', 'student:3')")
            wait_until(listener.pending, what="the notification to arrive")
            assert listener.pending()  # still there: asking reads nothing
            assert listener.read() == [("inv_pending", "student:3")]
            assert not listener.pending()
            conn.execute("SELECT pg_terminate_backend(%s)", (listener.pid,))

        def lost_or_pending() -> bool:
            try:
                return listener.pending()
            except psycopg.OperationalError:
                return True

        wait_until(lost_or_pending, what="the terminated backend's farewell to be seen")
        with pytest.raises(psycopg.OperationalError):
            listener.read()
    finally:
        listener.close()
