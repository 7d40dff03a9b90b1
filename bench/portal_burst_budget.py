"""The CPU a student of the mass submission's opening burst costs the machine, served for real: floor and portal.

`bench/portal_capacity.py` finds how many students each server carries; this
says why, in the unit that decides it. The run's p95 is set in the opening
burst, when every student submits, loads MyTestSeries with a cold cache and
loads ExamHome, back to back, while both cores are busy: the server, PostgreSQL
and the load generator share them. So the most students a server carries at a
given latency goes as the inverse of the CPU one student of the burst costs
the machine, and the ratio of two servers' capacities as the inverse ratio of
those costs. This bench measures them under the capacity run's own server
(`portal.server`, granian by default, one worker of 64 threads):

- floor: `bench/floor.py`, constant bodies of a page's size;
- optimized: `rollguard portal serve` on a seeded PostgreSQL database of the
  bench's own (created and dropped here);
- optimized_write_through (with `--write-through`): the same with
  `ROLLGUARD_PORTAL_WRITE_THROUGH=true`, the submit reading back the page.

For each arm, in turn (the order reversed every other run) on a fresh server,
`--concurrency` client threads of this process (each with one keep-alive
connection) play `--students` students' three requests; the bench takes the
CPU the server's processes and PostgreSQL's processes used meanwhile, per
student. The clients' own CPU is not counted: the load generator's is a
figure of the capacity run (`loadgen_cpu_ms_per_request`), given here as
`--loadgen-us-per-request`. With it, the ceiling on optimized/floor if both are
bound by the machine's CPU:

    (floor's server + 3 x load generator) / (portal + PostgreSQL + 3 x load generator)

and the same with a load generator that costs nothing (on another machine).
With `--warm` every student's MyTestSeries is loaded once before the burst
(not measured), as when students were browsing before the deadline.

Writes bench/results/portal_burst_budget.json (`--result NAME` to name it otherwise).

    .venv/bin/python bench/portal_burst_budget.py [--students 1000] [--concurrency 64] [--runs 3]
        [--warm] [--write-through] [--loadgen-us-per-request 450] [--result portal_burst_budget]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


from bench.machine import commit_of, write_result  # noqa: E402
from bench.portal_burst_cost import postgres_cpu, postgres_cpu_since, spread  # noqa: E402
from bench.portal_capacity import (  # noqa: E402
    DEFAULT_POSTGRES,
    Stack,
    cpu_seconds,
    in_run_order,
    reset_attempts,
    seeded_database,
    start_server,
    warm_pages,
)
from portal.seed import SeedPlan  # noqa: E402

#: Each arm: the server it runs (`floor` or the portal) and the portal's environment.
ARMS: dict[str, tuple[str, Mapping[str, str]]] = {
    "floor": ("floor", {}),
    "optimized": ("optimized", {}),
    "optimized_write_through": ("optimized", {"ROLLGUARD_PORTAL_WRITE_THROUGH": "true"}),
}
#: A student's requests in the burst, in order.
REQUESTS = ("submit", "my_test_series", "exam_home")


class Students:
    """Plays students' opening requests over one keep-alive connection per client thread."""

    def __init__(self, url: str) -> None:
        self._host, _, port = url.removeprefix("http://").partition(":")
        self._port = int(port)
        self._local = threading.local()
        self._lock = threading.Lock()
        self.reconnects = 0
        self.latency_s: dict[str, list[float]] = {name: [] for name in REQUESTS}
        info = http.client.HTTPConnection(self._host, self._port, timeout=60)
        info.request("GET", "/api/portal/info")
        exams = json.loads(info.getresponse().read())["exams"]
        info.close()
        self._exams = {int(series): ids for series, ids in sorted(exams.items())}

    def play(self, student_id: int) -> None:
        """Submit, MyTestSeries, ExamHome: what every student does first in the mass submission.

        :raise RuntimeError: a request got another status than it should.
        """
        rng = random.Random(student_id)
        series = rng.choice(list(self._exams))
        exam = rng.choice(self._exams[series])
        body = json.dumps({"student_id": student_id, "exam_id": exam, "score": rng.randint(0, 100)})
        self._request("submit", "POST", "/api/exam/submit", body, expect=201)
        self._request("my_test_series", "GET", f"/api/pages/my-test-series?student_id={student_id}")
        self._request(
            "exam_home", "GET", f"/api/pages/exam-home?student_id={student_id}&series_id={series}&step=0"
        )

    def _request(
        self, name: str, method: str, path: str, body: str | None = None, *, expect: int = 200
    ) -> None:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        started = time.perf_counter()
        try:
            status = self._exchange(method, path, body, headers)
        except (ConnectionError, http.client.RemoteDisconnected):
            # granian closes a keep-alive connection now and then after a POST whose body the floor
            # did not read; a GET is safe to send again on a new connection, as a browser would.
            self._local.connection = None
            if method != "GET":
                raise
            with self._lock:
                self.reconnects += 1
            status = self._exchange(method, path, body, headers)
        elapsed = time.perf_counter() - started
        if status != expect:
            raise RuntimeError(f"{method} {path}: {status}, expected {expect}")
        with self._lock:
            self.latency_s[name].append(elapsed)

    def _exchange(self, method: str, path: str, body: str | None, headers: dict[str, str]) -> int:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = http.client.HTTPConnection(
                self._host, self._port, timeout=60
            )
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status


def run_arm(arm: str, *, students: int, concurrency: int, stack: Stack) -> dict[str, Any]:
    """One burst against a fresh server of `arm`: CPU per student of the server and of PostgreSQL."""
    mode, settings = ARMS[arm]
    proc, url = start_server(mode, stack, settings)
    load = os.getloadavg()[0]
    print(f"-- {arm}, {students} students (load {load:.2f})", file=sys.stderr, flush=True)
    try:
        if stack.warm:
            warm_pages(url, students)
        played = Students(url)
        server0, pg0, wall0 = cpu_seconds(proc.pid), postgres_cpu(), time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(played.play, range(1, students + 1)))
        wall = time.perf_counter() - wall0
        server_s, pg_s = cpu_seconds(proc.pid) - server0, postgres_cpu_since(pg0)
    finally:
        proc.stop()
    return {
        "arm": arm,
        "load_average_1m": round(load, 2),
        "wall_s": round(wall, 2),
        "server_cpu_us_per_student": round(1e6 * server_s / students),
        "postgres_cpu_us_per_student": round(1e6 * pg_s / students),
        "reconnects": played.reconnects,
        "p95_ms": {name: round(1000 * _p95(values), 1) for name, values in played.latency_s.items()},
    }


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]


def ceilings(summary: dict[str, Any], loadgen_us: float) -> dict[str, dict[str, float]]:
    """Per optimized arm, the most optimized/floor can be if the burst is bound by the machine's CPU."""
    floor = summary["floor"]["server_cpu_us_per_student"]["median"]
    out: dict[str, dict[str, float]] = {}
    for arm, figures in summary.items():
        if arm == "floor":
            continue
        portal = (
            figures["server_cpu_us_per_student"]["median"] + figures["postgres_cpu_us_per_student"]["median"]
        )
        per_request = len(REQUESTS) * loadgen_us
        out[arm] = {
            "with_load_generator": round((floor + per_request) / (portal + per_request), 3),
            "load_generator_elsewhere": round(floor / portal, 3),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--students", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64, help="client threads playing students at once")
    parser.add_argument("--runs", type=int, default=3, help="bursts per arm, the arms interleaved")
    parser.add_argument(
        "--warm", action="store_true", help="load every student's MyTestSeries before the burst"
    )
    parser.add_argument(
        "--write-through", action="store_true", help="also run the portal with write-through on"
    )
    parser.add_argument(
        "--loadgen-us-per-request",
        type=float,
        default=450.0,
        help="the load generator's CPU a request (bench/portal_capacity.py: loadgen_cpu_ms_per_request)",
    )
    parser.add_argument("--server", default="granian", help="the WSGI server (portal.server)")
    parser.add_argument("--threads", type=int, default=64, help="the server's threads (one worker)")
    parser.add_argument(
        "--result", default="portal_burst_budget", help="name of the bench/results/<name>.json"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("ROLLGUARD_TEST_POSTGRES_URL", DEFAULT_POSTGRES),
        help="a server where the bench may create and drop a database of its own",
    )
    args = parser.parse_args()
    if args.students < 2 or args.concurrency < 1 or args.runs < 1:
        parser.error("--students must be at least 2, --concurrency and --runs at least 1")
    arms = ["floor", "optimized", *(["optimized_write_through"] if args.write_through else [])]
    rounds: dict[str, list[dict[str, Any]]] = {arm: [] for arm in arms}
    plan = SeedPlan(students=args.students, series=12, exams_per_series=5, attempts_per_series=2)
    with (
        seeded_database(args.postgres_url, plan) as (engine, database_url, seeded_max_id),
        tempfile.TemporaryDirectory(prefix="rollguard-burst-budget-") as work,
    ):
        stack = Stack(args.server, 1, args.threads, database_url, Path(work), warm=args.warm)
        for run in range(args.runs):
            for arm in in_run_order(run, arms):
                rounds[arm].append(
                    run_arm(arm, students=args.students, concurrency=args.concurrency, stack=stack)
                )
                reset_attempts(engine, seeded_max_id)
    summary = {
        arm: {
            figure: spread([r[figure] for r in runs])
            for figure in (
                "server_cpu_us_per_student",
                "postgres_cpu_us_per_student",
                "wall_s",
                "load_average_1m",
            )
        }
        for arm, runs in rounds.items()
    }
    ceiling = ceilings(summary, args.loadgen_us_per_request)
    for arm, figures in summary.items():
        server, pg = figures["server_cpu_us_per_student"], figures["postgres_cpu_us_per_student"]
        print(
            f"{arm:26} server {server['min']:>6.0f}/{server['median']:>6.0f}/{server['max']:>6.0f} us a student,"
            f" PostgreSQL {pg['median']:>5.0f}, wall {figures['wall_s']['median']:.1f} s"
        )
    print(f"ceiling on optimized/floor: {ceiling}")
    figures_out = {
        "students": args.students,
        "concurrency": args.concurrency,
        "runs": args.runs,
        "warm": args.warm,
        "server": f"{args.server}, 1 worker x {args.threads} threads",
        "requests_per_student": list(REQUESTS),
        "loadgen_us_per_request": args.loadgen_us_per_request,
        "summary": summary,
        "ceiling_optimized_over_floor": ceiling,
        "rounds": rounds,
        "commit": commit_of(REPO),
    }
    command = (
        f"python bench/portal_burst_budget.py --students {args.students} --concurrency {args.concurrency}"
        f" --runs {args.runs} --loadgen-us-per-request {args.loadgen_us_per_request:g}"
        + (" --warm" if args.warm else "")
        + (" --write-through" if args.write_through else "")
        + f" --result {args.result}"
    )
    print(f"wrote {write_result(args.result, figures_out, command=command)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
