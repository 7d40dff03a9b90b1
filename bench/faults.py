"""Faults, measured: what clients see while Redis, PostgreSQL and a token guesser misbehave.

Each scenario runs real components on free loopback ports, the same ones the
fault suite (`tests/faults/`) uses:

- redis-*: two portal workers (gunicorn) sharing a private redis-server that is
  paused (SIGSTOP) for 1 s, or killed for 1 s and started empty, while students
  submit; each acknowledged submission is followed by page loads on fresh
  connections (either worker). Stale read: a page without the student's
  acknowledged attempt. Lost: an acknowledged attempt missing after recovery.
- portal-postgres-*: two portal workers (no Redis: LISTEN/NOTIFY between
  them) on a private PostgreSQL cluster that is restarted, or whose backends
  are terminated every 0.1 s for 2 s, 0.5 s after students start submitting
  (four rounds each, so before, during and after the fault); stale and lost as
  for Redis.
- postgres-*: the flag service (gunicorn) on a private PostgreSQL cluster whose
  backends are terminated in a loop, or which is restarted twice, during 200
  concurrent creates; each acknowledged create is read back on a fresh
  connection (404 = stale). Lost: acknowledged but not stored.
- auth-flood: the controller (1 s interval, embedded scraper) rolls back a
  failing flag, with and without a guesser sending 50 bad tokens/s from the
  same address, interleaved (without, with, ...), --repeats each.

Each scenario runs --repeats times, interleaved (every scenario once, then
again); the table sums the counts over the runs and gives recovery and load
average as min/median/max. Errors: answers other than 2xx (or no answer);
"500s" counts those that were 500 (a bug, not an honest 503 with Retry-After).
Recovery: seconds from the end of the fault until a write is acknowledged and
read back again. Writes bench/results/faults.json with the machine and date.

    .venv/bin/python bench/faults.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.machine import write_result  # noqa: E402
from control.embedded import EmbeddedSource  # noqa: E402
from control.loop import Controller  # noqa: E402
from control.scraper import Scraper  # noqa: E402
from control.store import ControlStore  # noqa: E402
from flags.client import Guardrail, RollbackPolicy  # noqa: E402
from tests.conftest import LiveFlagService, start_flag_service  # noqa: E402
from tests.control.conftest import FN, MetricsTarget  # noqa: E402
from tests.faults.components import PrivatePostgres, PrivateRedis  # noqa: E402
from tests.faults.staleness import (  # noqa: E402
    Tally,
    load_pages,
    lost_submissions,
    recovery_seconds,
    run_during,
    submit_and_check,
)
from tests.portal.conftest import seed_database, start_portal  # noqa: E402

SHARED_POSTGRES = os.environ.get(
    "ROLLGUARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
STUDENTS = list(range(1, 25))
EXAM = 1


def load_average() -> float:
    return os.getloadavg()[0]


@contextmanager
def scratch_database() -> Iterator[str]:
    """A database of its own on the shared PostgreSQL, dropped afterwards."""
    name = f"rg_bench_{secrets.token_hex(4)}"
    admin = sqlalchemy.create_engine(SHARED_POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{SHARED_POSTGRES.rpartition('/')[0]}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# Redis under two portal workers


def redis_scenario(tmp: Path, name: str, fault: Callable[[PrivateRedis], None]) -> dict[str, Any]:
    redis = PrivateRedis()
    try:
        with scratch_database() as url:
            env = {"ROLLGUARD_REDIS_URL": redis.url, "ROLLGUARD_PORTAL_REDIS_NAMESPACE": uuid.uuid4().hex[:8]}
            portal = start_portal(
                tmp, database_url=seed_database(url), optimize=True, extra_env=env, workers=2
            )
            try:
                return _submits_under_fault(portal.url, name, lambda: fault(redis))
            finally:
                portal.process.stop()
    finally:
        redis.close()


def _submits_under_fault(
    url: str, name: str, fault: Callable[[], None], *, rounds: int = 1, lead_s: float = 0.0
) -> dict[str, Any]:
    """Students submit and reload on fresh connections while `fault()` runs; the scenario's row.

    Each student submits `rounds` times; the fault starts `lead_s` after the students.
    """
    warm = Tally()
    for student in STUDENTS:
        load_pages(url, student, count=4, tally=warm)
    during = Tally()
    recovered: list[float] = []

    def faulted() -> None:
        time.sleep(lead_s)
        fault()
        # From the end of the fault: a submit acknowledged and shown on a fresh connection.
        recovered.append(recovery_seconds(url, len(STUDENTS) + 1, exam_id=EXAM))

    run_during(
        faulted,
        lambda s: submit_and_check(url, s, exam_id=EXAM, samples=6, tally=during),
        students=STUDENTS * rounds,
    )
    return _row(
        name,
        requests=during.requests,
        errors=during.errors,
        internal=during.internal_errors,
        stale=during.stale_reads,
        lost=lost_submissions(url, during),
        recovery_s=recovered[0],
        acknowledged=during.acknowledged,
    )


def _pause(redis: PrivateRedis) -> None:
    redis.pause()
    time.sleep(1.0)  # the length of the fault
    redis.resume()


def _kill_for_a_second(redis: PrivateRedis) -> None:
    redis.kill()
    time.sleep(1.0)
    redis.start()


# PostgreSQL under two portal workers


def portal_postgres_scenario(
    tmp: Path, name: str, fault: Callable[[PrivatePostgres], None]
) -> dict[str, Any]:
    cluster = PrivatePostgres()
    try:
        portal = start_portal(tmp, database_url=seed_database(cluster.url), optimize=True, workers=2)
        try:
            # Students submit before, during and after the fault: an outage of a second or two
            # would otherwise take every submit of a single round.
            return _submits_under_fault(portal.url, name, lambda: fault(cluster), rounds=4, lead_s=0.5)
        finally:
            portal.process.stop()
    finally:
        cluster.close()


def _terminate_for_two_seconds(cluster: PrivatePostgres) -> None:
    for _ in range(20):
        cluster.terminate_backends()
        time.sleep(0.1)


# PostgreSQL under the flag service


def postgres_scenario(
    tmp: Path, name: str, fault: Callable[[PrivatePostgres], bool], *, count: int
) -> dict[str, Any]:
    cluster = PrivatePostgres()
    try:
        service = start_flag_service(tmp, database_url=cluster.url)
        try:
            return _creates_under_fault(service, cluster, name, fault, count=count)
        finally:
            service.process.stop()
    finally:
        cluster.close()


def _creates_under_fault(
    service: LiveFlagService,
    cluster: PrivatePostgres,
    name: str,
    fault: Callable[[PrivatePostgres], bool],
    *,
    count: int,
) -> dict[str, Any]:
    """`count` creates from 16 threads while `fault` runs (until it returns False or the creates end)."""
    headers = {"Authorization": service.admin_token}
    tally = Tally()
    acknowledged: list[str] = []
    done = threading.Event()
    recovered: list[float] = []

    def keep_breaking() -> None:
        while not done.is_set() and fault(cluster):
            pass
        ended = time.monotonic()
        while _create(service, f"probe-{uuid.uuid4().hex[:8]}") != 201:
            time.sleep(0.05)
        recovered.append(time.monotonic() - ended)

    def create(key: str) -> None:
        status = _create(service, key)
        if status != 201:
            tally.add(requests=1, errors=1, internal_errors=int(status == 500))
            return
        acknowledged.append(key)
        read = httpx.get(f"{service.url}/api/admin/flags/{key}", headers=headers, timeout=30)
        stale = read.status_code == 404
        tally.add(
            requests=2,
            errors=int(read.status_code != 200 and not stale),
            internal_errors=int(read.status_code == 500),
            stale_reads=int(stale),
        )

    breaker = threading.Thread(target=keep_breaking)
    breaker.start()
    keys = [f"bench-{i}" for i in range(count)]

    def create_all(chunk: list[str]) -> None:
        for key in chunk:
            create(key)

    threads = [threading.Thread(target=create_all, args=(keys[i::16],)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    breaker.join()
    flags = httpx.get(f"{service.url}/api/admin/flags", headers=headers, timeout=30).json()["flags"]
    stored = {flag["key"] for flag in flags}
    return _row(
        name,
        requests=tally.requests,
        errors=tally.errors,
        internal=tally.internal_errors,
        stale=tally.stale_reads,
        lost=len(set(acknowledged) - stored),
        recovery_s=recovered[0],
        acknowledged=len(acknowledged),
    )


def _create(service: LiveFlagService, key: str) -> int:
    try:
        response = httpx.post(
            f"{service.url}/api/admin/flags",
            json={"key": key},
            headers={"Authorization": service.admin_token},
            timeout=30,
        )
    except httpx.HTTPError:
        return 0
    return response.status_code


def _terminate_backends(cluster: PrivatePostgres) -> bool:
    cluster.terminate_backends()
    return True


class _RestartTwice:
    """Restart the cluster twice, back to back, then stop faulting."""

    def __init__(self) -> None:
        self.restarts = 0

    def __call__(self, cluster: PrivatePostgres) -> bool:
        cluster.restart()
        self.restarts += 1
        return self.restarts < 2


# auth flood during a rollback


def auth_flood(tmp: Path, repeats: int) -> dict[str, Any]:
    service = start_flag_service(tmp)
    target = MetricsTarget()
    store = ControlStore(f"sqlite:///{tmp / 'control.db'}")
    stop = threading.Event()
    scraper = Scraper(store, [target.url], interval_s=1.0)
    controller = Controller(
        flags=service.admin("controller"),
        source=EmbeddedSource(store),
        store=store,
        holder="bench",
        interval_s=1.0,
        lease_s=15.0,
    )
    threads = [
        threading.Thread(target=scraper.run, args=(stop,)),
        threading.Thread(target=controller.run, args=(stop,)),
    ]
    for thread in threads:
        thread.start()
    times: dict[str, list[float]] = {"without": [], "with": []}
    loads: list[float] = []
    try:
        for i in range(repeats):
            for mode in ("without", "with"):
                times[mode].append(
                    _rollback_time(service, target, key=f"flood-{i}-{mode}", guesser=mode == "with")
                )
                loads.append(load_average())
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        scraper.close()
        store.close()
        target.stop()
        service.process.stop()
    summary = {mode: _spread(values) for mode, values in times.items()}
    delta = summary["with"]["median"] - summary["without"]["median"]
    return {"rollback_s": summary, "median_delta_s": round(delta, 2), "load_avg_1m": loads}


def _rollback_time(service: LiveFlagService, target: MetricsTarget, *, key: str, guesser: bool) -> float:
    admin = service.admin("bench")
    admin.create_flag(
        key,
        enabled=True,
        rollout=10,
        state="rolling_out",
        payload={"fn": FN},
        guardrails=[Guardrail("error_rate", "<=", 0.02, window_s=3, min_samples=5, path="optimized")],
        rollback=RollbackPolicy(2, "hold"),
    )
    stop = threading.Event()
    failing = threading.Event()

    def traffic() -> None:
        while not stop.wait(0.05):
            target.calls("optimized", 10, errors=5 if failing.is_set() else 0)
            target.calls("direct", 90)

    def guess() -> None:
        with httpx.Client(timeout=5) as http:
            while not stop.wait(0.02):  # 50 per second
                http.get(
                    f"{service.url}/api/admin/flags",
                    headers={"Authorization": "guess-" + secrets.token_hex(8)},
                )

    workers = [threading.Thread(target=traffic)] + ([threading.Thread(target=guess)] if guesser else [])
    for worker in workers:
        worker.start()
    try:
        time.sleep(5.0)  # a healthy stretch first, so the fault starts mid-stage
        failing.set()
        started = time.monotonic()
        while admin.get_flag(key).enabled:
            if time.monotonic() - started > 120:
                raise RuntimeError(f"{key} not rolled back within 120 s")
            time.sleep(0.05)
        return time.monotonic() - started
    finally:
        stop.set()
        for worker in workers:
            worker.join()
        admin.close()


# table


def _row(
    name: str,
    *,
    requests: int,
    errors: int,
    internal: int,
    stale: int,
    lost: int,
    recovery_s: float,
    acknowledged: int,
) -> dict[str, Any]:
    return {
        "scenario": name,
        "requests": requests,
        "errors": errors,
        "errors_500": internal,
        "stale_reads": stale,
        "acknowledged_writes": acknowledged,
        "acknowledged_writes_lost": lost,
        "recovery_s": round(recovery_s, 2),
        "load_avg_1m": round(load_average(), 2),
    }


def _spread(values: list[float]) -> dict[str, Any]:
    return {
        "min": round(min(values), 2),
        "median": round(statistics.median(values), 2),
        "max": round(max(values), 2),
        "runs": [round(v, 2) for v in values],
    }


def _scenarios(creates: int) -> list[tuple[str, Callable[[Path, str], dict[str, Any]]]]:
    """Every scenario by name; each call runs it once in a directory of its own."""
    return [
        ("redis-pause-1s", lambda tmp, name: redis_scenario(tmp, name, _pause)),
        ("redis-kill-1s-restart-empty", lambda tmp, name: redis_scenario(tmp, name, _kill_for_a_second)),
        (
            "portal-postgres-restart",
            lambda tmp, name: portal_postgres_scenario(tmp, name, PrivatePostgres.restart),
        ),
        (
            "portal-postgres-terminate-backends",
            lambda tmp, name: portal_postgres_scenario(tmp, name, _terminate_for_two_seconds),
        ),
        (
            "postgres-terminate-backends",
            lambda tmp, name: postgres_scenario(tmp, name, _terminate_backends, count=creates),
        ),
        (
            "postgres-restart-twice",
            lambda tmp, name: postgres_scenario(tmp, name, _RestartTwice(), count=creates),
        ),
    ]


def _combine(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row for a scenario's runs: counts summed, recovery and load as min/median/max."""
    counts = (
        "requests",
        "errors",
        "errors_500",
        "stale_reads",
        "acknowledged_writes",
        "acknowledged_writes_lost",
    )
    return {
        "scenario": name,
        "runs": len(runs),
        **{count: sum(run[count] for run in runs) for count in counts},
        "recovery_s": _spread([run["recovery_s"] for run in runs]),
        "load_avg_1m": _spread([run["load_avg_1m"] for run in runs]),
        "each_run": runs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs of each scenario and of each auth-flood mode (interleaved)",
    )
    parser.add_argument("--creates", type=int, default=200, help="concurrent creates per PostgreSQL scenario")
    args = parser.parse_args()
    os.environ.setdefault("ROLLGUARD_TEST_SESSION", uuid.uuid4().hex)
    logging.basicConfig(level=logging.ERROR)
    scenarios = _scenarios(args.creates)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in scenarios}
    with tempfile.TemporaryDirectory(prefix="rollguard-faults-") as tmp:
        root = Path(tmp)
        for repeat in range(args.repeats):
            for name, scenario in scenarios:
                (root / f"{name}-{repeat}").mkdir()
                runs[name].append(scenario(root / f"{name}-{repeat}", name))
                print(_format_run(runs[name][-1]), flush=True)
        (root / "auth").mkdir()
        flood = auth_flood(root / "auth", args.repeats)
    rows = [_combine(name, runs[name]) for name, _ in scenarios]
    figures = {"scenarios": rows, "auth_flood": flood}
    path = write_result(
        "faults", figures, command=("python bench/faults.py " + " ".join(sys.argv[1:])).strip()
    )
    print()
    print(_header())
    for row in rows:
        print(_format(row))
    without, with_ = flood["rollback_s"]["without"], flood["rollback_s"]["with"]
    loads = flood["load_avg_1m"]
    print(
        f"\nfault -> rollback, controller at 1 s: without guesser min/median/max "
        f"{without['min']}/{without['median']}/{without['max']} s; with 50 bad tokens/s "
        f"{with_['min']}/{with_['median']}/{with_['max']} s; median delta {flood['median_delta_s']} s; "
        f"load {min(loads):.1f}-{max(loads):.1f}"
    )
    print(f"wrote {path}")
    return 0


def _header() -> str:
    return (
        f"{'scenario':34} {'runs':>4} {'requests':>8} {'errors':>6} {'500s':>4} {'stale':>5} {'acked':>5} "
        f"{'lost':>4} {'recovery s min/med/max':>22} {'load':>9}"
    )


def _format(row: dict[str, Any]) -> str:
    recovery, load = row["recovery_s"], row["load_avg_1m"]
    return (
        f"{row['scenario']:34} {row['runs']:>4} {row['requests']:>8} {row['errors']:>6} {row['errors_500']:>4} "
        f"{row['stale_reads']:>5} {row['acknowledged_writes']:>5} {row['acknowledged_writes_lost']:>4} "
        f"{recovery['min']:>8}/{recovery['median']}/{recovery['max']:<6} {load['min']:>4}-{load['max']}"
    )


def _format_run(row: dict[str, Any]) -> str:
    return (
        f"{row['scenario']:34} requests {row['requests']} errors {row['errors']} (500s {row['errors_500']}) "
        f"stale {row['stale_reads']} acked {row['acknowledged_writes']} lost {row['acknowledged_writes_lost']} "
        f"recovery {row['recovery_s']} s load {row['load_avg_1m']}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
