"""A Redis blip never hides a student's acknowledged submission, on any portal worker.

Two portal workers share a private redis-server that the tests pause
(SIGSTOP), kill, and restart while students submit; every acknowledged
submission must show on every page load that follows, each on a fresh
connection (so on either worker).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.components import PrivateRedis
from tests.faults.staleness import (
    Tally,
    load_pages,
    lost_submissions,
    recovery_seconds,
    run_during,
    submit_and_check,
)
from tests.portal.conftest import LivePortal, seed_database, start_portal

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STUDENTS = list(range(1, 25))
EXAM = 1


@pytest.fixture
def portal(tmp_path: Path, fresh_postgres_url: str, private_redis: PrivateRedis) -> Iterator[LivePortal]:
    env = {"ROLLGUARD_REDIS_URL": private_redis.url, "ROLLGUARD_PORTAL_REDIS_NAMESPACE": uuid.uuid4().hex[:8]}
    live = start_portal(
        tmp_path, database_url=seed_database(fresh_postgres_url), optimize=True, extra_env=env, workers=2
    )
    yield live
    live.process.terminate()


def _pause(redis: PrivateRedis) -> None:
    redis.pause()
    threading.Event().wait(1.0)  # the length of the fault, not a synchronisation
    redis.resume()


def _kill_for_a_second(redis: PrivateRedis) -> None:
    redis.kill()
    threading.Event().wait(1.0)
    redis.start()


FAULTS: dict[str, Callable[[PrivateRedis], None]] = {
    "pause-1s": _pause,
    "kill-1s-restart-empty": _kill_for_a_second,
    "restart": PrivateRedis.restart,
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_no_stale_page_after_an_acknowledged_submit(
    portal: LivePortal, private_redis: PrivateRedis, fault: str
) -> None:
    warm = Tally()
    for student in STUDENTS:
        load_pages(portal.url, student, count=4, tally=warm)
    assert warm.errors == 0, warm
    during = Tally()
    run_during(
        lambda: FAULTS[fault](private_redis),
        lambda student: submit_and_check(portal.url, student, exam_id=EXAM, samples=6, tally=during),
        students=STUDENTS,
    )
    assert during.stale_reads == 0 and during.internal_errors == 0, during
    assert recovery_seconds(portal.url, len(STUDENTS) + 1, exam_id=EXAM) < 30
    after = Tally()
    for student in STUDENTS:
        submit_and_check(portal.url, student, exam_id=EXAM, samples=4, tally=after)
    assert after.stale_reads == 0 and after.errors == 0, after
    assert during.acknowledged + after.acknowledged > len(STUDENTS)
    assert lost_submissions(portal.url, during) == 0
