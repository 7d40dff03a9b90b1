"""`rollguard portal serve` under each WSGI server: real HTTP, reads its writes, stops with its workers."""

from __future__ import annotations

import httpx
import psutil
import pytest

from portal.server import SERVERS
from tests.portal.conftest import start_portal
from tests.support import python_output, wait_until


@pytest.mark.parametrize("server", SERVERS)
def test_each_server_serves_pages_that_show_a_fresh_submission(tmp_path, database_url, server):
    live = start_portal(tmp_path, database_url=database_url, optimize=True, server=server)
    workers = psutil.Process(live.process.pid).children(recursive=True)
    try:
        before = httpx.get(f"{live.url}/api/pages/my-test-series?student_id=4", timeout=10)
        assert before.status_code == 200 and before.headers["X-Rollguard-Path"] == "optimized"
        submitted = httpx.post(
            f"{live.url}/api/exam/submit", json={"student_id": 4, "exam_id": 7, "score": 91}, timeout=10
        ).json()
        after = httpx.get(f"{live.url}/api/pages/my-test-series?student_id=4", timeout=10).json()
    finally:
        live.process.terminate()
    series = {s["series_id"]: s["attempts"] for s in after["series"]}
    assert series[submitted["series_id"]][-1] == submitted["attempt"]
    assert len(series[submitted["series_id"]]) == 3
    wait_until(
        lambda: not any(w.is_running() and w.status() != "zombie" for w in workers), what="workers gone"
    )


def test_a_worker_freezes_what_building_the_app_made_so_that_collections_skip_it(tmp_path, database_url):
    # In a process of its own, as a server's worker: the freeze is the whole interpreter's.
    script = (
        "import gc, portal.wsgi as wsgi\n"
        "app = wsgi.create()\n"
        "walked = {id(o) for o in gc.get_objects()}\n"
        "print(gc.get_freeze_count(), id(app) in walked, id(app.extensions['portal']) in walked)\n"
        "app.extensions['portal'].close()\n"
    )
    env = {"ROLLGUARD_PORTAL_DATABASE_URL": database_url, "ROLLGUARD_VAR_DIR": str(tmp_path)}
    frozen, app_walked, portal_walked = python_output(script, env).split()
    assert int(frozen) > 10_000
    assert (app_walked, portal_walked) == ("False", "False")
