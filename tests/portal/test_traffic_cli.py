"""`rollguard traffic run` end to end: real HTTP from locust against a portal served by granian (the default server)."""

from __future__ import annotations

import json
import re
import subprocess
import uuid

import httpx
import pytest

from portal import promtext
from rollguard import ROLLGUARD
from tests.portal.conftest import seed_database, start_portal
from tests.support import REPO, python_output, wait_until

pytestmark = pytest.mark.slow

SUMMARY_KEYS = {
    "scenario",
    "users",
    "requests",
    "errors",
    "latency",
    "latency_by_path",
    "latency_by_page",
    "logical_calls",
    "backend_calls",
    "key_fetches",
    "db_queries",
    "peak_pool_in_use",
    "pool_capacity",
    "call_reduction",
    "cache_bytes",
    "ideal",
    "stale_reads",
    "submissions",
}


def run_traffic(target: str, scenario: str, users: int, duration: float, json_out) -> tuple[dict, str]:
    result = subprocess.run(
        [
            *ROLLGUARD,
            "traffic",
            "run",
            "--scenario",
            scenario,
            "--users",
            str(users),
            "--duration",
            str(duration),
            "--target",
            target,
            "--json-out",
            str(json_out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert json.loads(json_out.read_text()) == summary
    return summary, result.stderr


def test_mass_submission_against_an_optimized_portal(tmp_path):
    url = seed_database(f"sqlite:///{tmp_path / 'portal.db'}")
    live = start_portal(tmp_path, database_url=url, optimize=True)
    try:
        summary, progress = run_traffic(live.url, "mass-submission", 30, 5, tmp_path / "out.json")
    finally:
        live.process.terminate()
    assert SUMMARY_KEYS <= set(summary)
    assert re.search(r"\[ *\d+\.\ds\] users \d+/30  requests \d+", progress), progress
    assert summary["errors"] == 0 and summary["requests"] > 30
    assert summary["submissions"] == 30
    assert summary["stale_reads"] == 0
    assert summary["fresh_connection_checks"] == 30 and summary["fresh_connection_stale_reads"] == 0
    assert set(summary["page_loads"]) == {"optimized"}
    assert summary["latency"]["p50_ms"] <= summary["latency"]["p95_ms"] <= summary["latency"]["p99_ms"]
    assert summary["backend_calls"] <= summary["key_fetches"] <= summary["logical_calls"]
    assert summary["call_reduction"] > 0
    ideal = summary["ideal"]
    assert ideal["n"] == summary["logical_calls"]
    assert ideal["c_min"] <= ideal["c_actual"] <= ideal["n"]
    assert 0 < ideal["eta"] <= 1.0
    assert 0 < summary["peak_pool_in_use"] <= summary["pool_capacity"] == 20
    assert summary["cache_bytes"] > 0


def test_steady_traffic_against_a_direct_portal_saves_nothing(tmp_path):
    url = seed_database(f"sqlite:///{tmp_path / 'portal.db'}")
    live = start_portal(tmp_path, database_url=url, optimize=False)
    try:
        summary, _progress = run_traffic(live.url, "steady", 5, 3, tmp_path / "out.json")
    finally:
        live.process.terminate()
    assert summary["errors"] == 0 and summary["stale_reads"] == 0
    assert set(summary["page_loads"]) == {"direct"}
    assert summary["backend_calls"] == summary["logical_calls"] == summary["ideal"]["n"] > 0
    assert summary["call_reduction"] == 0
    assert summary["ideal"]["eta"] == 0 or summary["ideal"]["c_min"] == summary["ideal"]["n"]
    assert summary["db_queries"] >= summary["backend_calls"]


@pytest.fixture
def two_workers(tmp_path, redis_url):
    """An optimized portal of two workers sharing Redis, on SQLite."""
    url = seed_database(f"sqlite:///{tmp_path / 'portal.db'}")
    env = {
        "ROLLGUARD_REDIS_URL": redis_url,
        "ROLLGUARD_PORTAL_REDIS_NAMESPACE": f"portal-{uuid.uuid4().hex[:8]}",
    }
    live = start_portal(tmp_path, database_url=url, optimize=True, extra_env=env, workers=2)
    yield live
    live.process.terminate()


@pytest.mark.integration
def test_two_workers_sharing_redis_serve_no_stale_reads(tmp_path, two_workers):
    summary, _progress = run_traffic(two_workers.url, "exam-home", 20, 5, tmp_path / "out.json")
    # Each worker exports its own /metrics, so only what the client saw is compared here.
    assert summary["errors"] == 0 and summary["submissions"] > 0
    assert summary["stale_reads"] == 0
    assert summary["fresh_connection_checks"] == summary["submissions"]
    assert summary["fresh_connection_stale_reads"] == 0
    assert set(summary["page_loads"]) == {"optimized"}


@pytest.mark.integration
def test_the_load_generator_takes_its_metric_deltas_from_the_worker_it_began_with(two_workers):
    # Each worker serves its own /metrics: the run's closing scrape must come from the worker of its first,
    # though the keep-alive connection the generator holds may lead to the other one.
    pids: set[float] = set()

    def both_workers_answered() -> bool:
        pids.add(promtext.scrape(two_workers.url).total("portal_process_id"))  # a new connection each time
        return len(pids) == 2

    wait_until(both_workers_answered, what="a scrape from each of the two workers")
    # A client whose connection is with one worker, asked for the other worker's counters.
    script = (
        "import httpx, portal.traffic as traffic\n"
        "from portal import promtext\n"
        "client = httpx.Client()\n"
        f"held = promtext.scrape({two_workers.url!r}, client=client).total(traffic.WORKER)\n"
        f"other = ({sorted(pids)}[0] + {sorted(pids)}[1]) - held\n"
        f"scrape = traffic._scrape_patiently({two_workers.url!r}, client, worker=other)\n"
        "print(held, other, scrape.total(traffic.WORKER))\n"
    )
    held, other, scraped = map(float, python_output(script).split())
    assert held in pids and other in pids and held != other
    assert scraped == other


def test_traffic_refuses_more_users_than_seeded_students(tmp_path):
    url = seed_database(f"sqlite:///{tmp_path / 'portal.db'}")
    live = start_portal(tmp_path, database_url=url, optimize=True)
    try:
        assert httpx.get(f"{live.url}/api/portal/info").json()["students"] == 60
        result = subprocess.run(
            [
                *ROLLGUARD,
                "traffic",
                "run",
                "--scenario",
                "steady",
                "--users",
                "61",
                "--duration",
                "1",
                "--target",
                live.url,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            check=False,
        )
    finally:
        live.process.terminate()
    assert result.returncode != 0
    assert "60 students" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("target", "resolver"),
    [
        ("http://127.0.0.1:8000", "gevent.resolver.blocking.Resolver"),
        ("http://[::1]:8000/", "gevent.resolver.blocking.Resolver"),
        ("http://localhost:8000", "gevent.resolver.blocking.Resolver"),
        ("http://portal.example:8000", "gevent.resolver.thread.Resolver"),
    ],
)
def test_the_load_generator_resolves_addresses_in_place_and_names_on_gevents_thread_pool(target, resolver):
    # In a process of its own: importing the traffic module patches the standard library with gevent.
    script = (
        "import gevent, portal.traffic as traffic\n"
        f"traffic._resolve_in_the_calling_greenlet({target!r})\n"
        "chosen = type(gevent.get_hub().resolver)\n"
        "print(f'{chosen.__module__}.{chosen.__qualname__}')\n"
    )
    assert python_output(script).strip() == resolver


def test_the_load_generator_freezes_what_it_imported_so_that_collections_skip_it():
    # In a process of its own: importing the traffic module patches the standard library with gevent.
    script = (
        "import gc, locust, portal.traffic as traffic\n"
        "traffic.freeze_what_startup_made()\n"
        "walked = {id(o) for o in gc.get_objects()}\n"
        "print(gc.get_freeze_count(), id(locust.User) in walked)\n"
    )
    frozen, user_class_walked = python_output(script).split()
    assert int(frozen) > 10_000
    assert user_class_walked == "False"
