"""`rollguard traffic run` sees cross-worker staleness: it finds it where it is, and finds none through a Redis blip.

After each acknowledged submit, a virtual user loads its page on a new
connection, which a portal of several workers may hand to a worker other than
the one that took the submit. Two single-worker portals behind a proxy that
spreads connections at random stand for two workers whose invalidations never
reach each other: the run must report the stale pages. Two real workers
sharing a private redis-server that is paused mid-run must show none.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from rollguard import ROLLGUARD
from tests.faults.components import PrivateRedis
from tests.faults.spreader import ConnectionSpreader
from tests.portal.conftest import LivePortal, seed_database, start_portal
from tests.support import REPO, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USERS = 20


def _traffic(target: str, scenario: str, duration_s: float, out: Path) -> subprocess.Popen[str]:
    argv = [
        *ROLLGUARD,
        "traffic",
        "run",
        "--scenario",
        scenario,
        "--users",
        str(USERS),
        "--duration",
        str(duration_s),
        "--target",
        target,
        "--settle",
        "5",
        "--json-out",
        str(out),
    ]
    return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(run: subprocess.Popen[str], out: Path) -> tuple[dict[str, Any], str]:
    try:
        stdout, progress = run.communicate(timeout=180)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 0, progress[-3000:]
    summary: dict[str, Any] = json.loads(stdout)
    assert json.loads(out.read_text()) == summary
    return summary, progress


def _warm(url: str, students: range) -> None:
    with httpx.Client(timeout=30) as http:
        for student in students:
            page = http.get(f"{url}/api/pages/my-test-series", params={"student_id": student})
            assert page.status_code == 200, page.text


def test_traffic_reports_pages_a_worker_without_the_invalidation_serves(tmp_path: Path) -> None:
    database = seed_database(f"sqlite:///{tmp_path / 'portal.db'}")
    # Cached pages stay fresh for the whole test, however slow the machine is to start the run.
    long_ttl = {"ROLLGUARD_OPTIMIZER_TTL_S": "600"}
    workers = [
        start_portal(tmp_path, database_url=database, optimize=True, extra_env=long_ttl) for _ in range(2)
    ]
    spreader = ConnectionSpreader([live.url for live in workers])
    try:
        for live in workers:
            _warm(live.url, range(1, USERS + 1))  # every student's page cached on both
        summary, progress = _finish(
            _traffic(spreader.url, "mass-submission", 4, tmp_path / "out.json"), tmp_path / "out.json"
        )
    finally:
        spreader.close()
        for live in workers:
            live.process.terminate()
    assert summary["submissions"] == USERS
    assert summary["fresh_connection_checks"] == USERS
    # About half the fresh connections reach the worker that did not take the submit (random, seeded).
    assert summary["fresh_connection_stale_reads"] > 0, summary
    assert summary["stale_reads"] >= summary["fresh_connection_stale_reads"]
    assert summary["stale_examples"], summary
    assert re.search(r"stale [1-9]", progress), progress


@pytest.fixture
def redis_workers(tmp_path: Path, private_redis: PrivateRedis) -> Any:
    env = {"ROLLGUARD_REDIS_URL": private_redis.url, "ROLLGUARD_PORTAL_REDIS_NAMESPACE": uuid.uuid4().hex[:8]}
    database = seed_database(f"sqlite:///{tmp_path / 'portal.db'}")
    live = start_portal(tmp_path, database_url=database, optimize=True, extra_env=env, workers=2)
    yield live
    live.process.terminate()


def _submissions(url: str) -> float:
    try:
        text = httpx.get(f"{url}/metrics", timeout=5).text
    except httpx.HTTPError:
        return 0.0
    return sum(
        float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line.startswith("portal_submissions_total")
    )


def test_traffic_through_a_redis_pause_finds_no_stale_page(
    tmp_path: Path, redis_workers: LivePortal, private_redis: PrivateRedis
) -> None:
    _warm(redis_workers.url, range(1, USERS + 1))
    run = _traffic(redis_workers.url, "exam-home", 10, tmp_path / "out.json")
    try:
        wait_until(lambda: _submissions(redis_workers.url) > 0, timeout=60, what="the first submissions")
        private_redis.pause()
        threading.Event().wait(1.0)  # the length of the fault, not a synchronisation
    finally:
        private_redis.resume()
    summary, _progress = _finish(run, tmp_path / "out.json")
    assert summary["submissions"] > 0
    assert summary["fresh_connection_checks"] == summary["submissions"]
    assert summary["stale_reads"] == 0 and summary["fresh_connection_stale_reads"] == 0, summary
    assert 500 not in {int(status) for status in summary["statuses"]}, summary["statuses"]
