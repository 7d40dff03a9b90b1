"""CPU the mass submission's opening burst costs the portal and PostgreSQL, per student, in process.

The capacity benchmark's latency is decided in the first seconds of a mass
submission, when every student submits and then loads pages with a cold cache.
This replays that burst without a server or a load generator, so that what it
measures is the portal's own work and not the shared machine's scheduling: a
seeded PostgreSQL database of its own (created and dropped here), the optimized
portal app, and `--threads` threads (the server's request threads) each playing
students through Flask's test client: submit, MyTestSeries (cold: all its keys
miss), MyTestSeries again, ExamHome. It reports the CPU seconds of this process
and of PostgreSQL's processes per student, the wall time, the batch calls and
the INSERT statements that wrote the submits (one per group).

Two configurations, interleaved `--repeats` times each, on a fresh app and
fresh attempts every round:

- grouped: the optimizer's default, where at most `max_batches_in_flight` (4)
  `get_many` batch calls run at once and the misses of other pages wait and
  share the next call (`optimizer.grouping`);
- ungrouped: `max_batches_in_flight` as high as the thread count, so every page
  makes its own batch call, as before grouping.

With `--baseline-tree PATH` (another checkout, such as an earlier commit) it
compares instead this checkout's portal with that one's, both at their default
configuration, interleaved: each round runs in a child process that imports the
portal and the optimizer from its tree, against the same seeded database.

With `--compare-layouts A,B` it compares two cache layouts of this checkout
instead, each round in a child process as above; with `--compare-write-through`,
this checkout with write-through off and on (`ROLLGUARD_PORTAL_WRITE_THROUGH`).

Every round also reports the mean CPU time of each of a student's four requests
(`submit_cpu_us`, `cold_page_cpu_us`, `warm_page_cpu_us`, `exam_home_cpu_us`),
taken by the request's thread inside the app (the test client's own work is
not counted; the other threads' work, such as the listener's, is only in the
process total).

Writes bench/results/portal_burst_cost.json (`--result NAME` to name it otherwise).

    .venv/bin/python bench/portal_burst_cost.py [--students 1000] [--threads 64] [--repeats 3]
        [--cache-layout tiered|objects|packed | --compare-layouts objects,tiered | --compare-write-through]
        [--baseline-tree ../baseline] [--result portal_burst_cost]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# A child round imports the code under test from the tree it was given (see --baseline-tree).
CODE_TREE = Path(os.environ.get("ROLLGUARD_BENCH_CODE_TREE", REPO))
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(CODE_TREE))

import psutil  # noqa: E402
import sqlalchemy  # noqa: E402
from flask import Flask  # noqa: E402

from bench import servers  # noqa: E402
from bench.machine import write_result  # noqa: E402
from portal.app import create_app  # noqa: E402
from portal.db import make_engine  # noqa: E402
from portal.models import Attempt  # noqa: E402
from portal.runtime import optimizer_config_from_env  # noqa: E402
from portal.seed import SeedPlan, seed  # noqa: E402
from portal.settings import PortalSettings  # noqa: E402

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_cpu() -> dict[int, float]:
    """CPU seconds of every PostgreSQL process now, by pid."""
    found: dict[int, float] = {}
    for proc in psutil.process_iter(["name"]):
        if (proc.info["name"] or "").startswith("postgres"):
            try:
                found[proc.pid] = _process_cpu(proc)
            except psutil.NoSuchProcess:
                continue
    return found


def _process_cpu(proc: psutil.Process) -> float:
    """A single-threaded process's CPU seconds, to the nanosecond where Linux tells it.

    /proc/<pid>/stat counts in clock ticks (10 ms) and truncates: over a burst a backend
    uses a few tens of milliseconds, and twenty of them would lose up to 0.4 s between them.
    /proc/<pid>/schedstat counts the main thread's time on a CPU in nanoseconds.
    """
    try:
        with open(f"/proc/{proc.pid}/schedstat") as stats:
            return int(stats.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        times = proc.cpu_times()
        return float(times.user + times.system)


def postgres_cpu_since(before: dict[int, float]) -> float:
    """CPU PostgreSQL's processes used since `before`; a process that exited meanwhile is not counted.

    The app's pooled connections live through the burst, so their backends are
    counted whole; other clients' backends on a shared server add to the figure.
    """
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in postgres_cpu().items())


#: A student's requests in the burst, in order; the CPU each takes is reported apart.
REQUESTS = ("submit", "cold_page", "warm_page", "exam_home")


class RequestCpu:
    """WSGI middleware: the CPU time of the request thread inside the app, by the kind its caller set.

    Measured inside the WSGI call, so the test client's own work is not counted.
    """

    def __init__(self, app: Any) -> None:
        self._app = app
        self._lock = threading.Lock()
        self.kind = threading.local()
        self.seconds: dict[str, list[float]] = {kind: [] for kind in REQUESTS}

    def __call__(self, environ: Any, start_response: Any) -> Any:
        started = time.thread_time()
        try:
            return self._app(environ, start_response)
        finally:
            spent = time.thread_time() - started
            with self._lock:
                self.seconds[self.kind.name].append(spent)

    def means_us(self) -> dict[str, float]:
        return {f"{kind}_cpu_us": round(1e6 * statistics.mean(v)) for kind, v in self.seconds.items() if v}


def burst(app: Flask, students: int, threads: int) -> dict[str, float]:
    """Every student submits, then loads MyTestSeries twice and ExamHome once; the mean CPU of each request."""
    info = app.test_client().get("/api/portal/info").get_json()
    exams = {int(series): ids for series, ids in info["exams"].items()}
    local = threading.local()
    timed = RequestCpu(app.wsgi_app)
    app.wsgi_app = timed  # type: ignore[method-assign]

    def student(student_id: int) -> None:
        client = getattr(local, "client", None) or app.test_client()
        local.client = client
        rng = random.Random(student_id)
        series = rng.choice(sorted(exams))
        body = {"student_id": student_id, "exam_id": rng.choice(exams[series]), "score": 50}
        timed.kind.name = "submit"
        assert client.post("/api/exam/submit", json=body).status_code == 201
        for kind, url in zip(
            REQUESTS[1:],
            (
                f"/api/pages/my-test-series?student_id={student_id}",
                f"/api/pages/my-test-series?student_id={student_id}",
                f"/api/pages/exam-home?student_id={student_id}&series_id={series}&step=0",
            ),
            strict=True,
        ):
            timed.kind.name = kind
            assert client.get(url).status_code == 200, url

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(student, range(1, students + 1)))
    return timed.means_us()


def one_round(database_url: str, *, grouped: bool, students: int, threads: int, work: Path) -> dict[str, Any]:
    config = optimizer_config_from_env({})
    if not grouped:
        config = dataclasses.replace(config, max_batches_in_flight=threads)
    app = create_app(PortalSettings(database_url=database_url, optimize=True, var_dir=work), config)
    portal = app.extensions["portal"]
    try:
        pg0, cpu0, wall0 = postgres_cpu(), time.process_time(), time.perf_counter()
        by_request = burst(app, students, threads)
        cpu1, wall1 = time.process_time(), time.perf_counter()
        pg_s = postgres_cpu_since(pg0)
        batch_calls = portal.optimizer.grouper.calls
        insert_statements = portal.attempts.groups
    finally:
        portal.close()
    return {
        "portal_cpu_us_per_student": round(1e6 * (cpu1 - cpu0) / students),
        "postgres_cpu_us_per_student": round(1e6 * pg_s / students),
        "wall_s": round(wall1 - wall0, 2),
        "batch_calls": batch_calls,
        "insert_statements": insert_statements,
        **by_request,
    }


#: The portal environment of each arm of `--compare-write-through`.
WRITE_THROUGH_ARMS = {
    "write_through_off": {"ROLLGUARD_PORTAL_WRITE_THROUGH": "false"},
    "write_through_on": {"ROLLGUARD_PORTAL_WRITE_THROUGH": "true"},
}


def round_in_tree(
    tree: Path, database_url: str, *, students: int, threads: int, settings: dict[str, str] | None = None
) -> dict[str, Any]:
    """One round at the default configuration (or with `settings`, portal environment variables), in a child
    process that imports `tree`'s code."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--child-round", database_url]
    argv += ["--students", str(students), "--threads", str(threads)]
    env = {**os.environ, "ROLLGUARD_BENCH_CODE_TREE": str(tree), **(settings or {})}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the round in {tree} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.splitlines()[-1]))


def child_round(database_url: str, students: int, threads: int) -> int:
    with tempfile.TemporaryDirectory(prefix="rollguard-burst-") as work:
        figures = one_round(database_url, grouped=True, students=students, threads=threads, work=Path(work))
    print(json.dumps(figures))
    return 0


def spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--students", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-tree", type=Path, help="another checkout to compare with, interleaved")
    parser.add_argument(
        "--cache-layout",
        choices=("tiered", "objects", "packed"),
        default="tiered",
        help="the portal's cache layout in every round (ROLLGUARD_PORTAL_CACHE_LAYOUT)",
    )
    parser.add_argument(
        "--compare-layouts",
        metavar="A,B",
        help="compare two cache layouts of this checkout instead, interleaved, each round in a child process",
    )
    parser.add_argument(
        "--compare-write-through",
        action="store_true",
        help="compare this checkout with write-through off and on (ROLLGUARD_PORTAL_WRITE_THROUGH), interleaved",
    )
    parser.add_argument("--result", default="portal_burst_cost", help="name of the bench/results file")
    parser.add_argument("--child-round", metavar="DATABASE_URL", help=argparse.SUPPRESS)
    parser.add_argument(
        "--postgres-url", default=os.environ.get("ROLLGUARD_TEST_POSTGRES_URL", DEFAULT_POSTGRES)
    )
    args = parser.parse_args()
    if args.child_round:
        return child_round(args.child_round, args.students, args.threads)
    # Not at the top: a child round imports `bench` from the tree it measures, which may predate it.
    from bench.machine import commit_of

    # Every round's PortalSettings, and every child round's, reads the layout from the environment.
    os.environ["ROLLGUARD_PORTAL_CACHE_LAYOUT"] = args.cache_layout
    compared = tuple(args.compare_layouts.split(",")) if args.compare_layouts else ()
    if compared and (len(compared) != 2 or args.baseline_tree):
        parser.error("--compare-layouts takes two layouts, and not with --baseline-tree")
    if args.compare_write_through and (compared or args.baseline_tree):
        parser.error("--compare-write-through compares this checkout alone")
    # Arms of this checkout, each with its portal environment (a layout, or write-through off / on).
    arms = (
        WRITE_THROUGH_ARMS
        if args.compare_write_through
        else {layout: {"ROLLGUARD_PORTAL_CACHE_LAYOUT": layout} for layout in compared}
    )
    labels = tuple(arms) or (("this", "baseline") if args.baseline_tree else ("grouped", "ungrouped"))
    name, url = servers.create_database(args.postgres_url)
    engine = make_engine(url)
    rounds: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
    loads: list[float] = []
    try:
        seed(engine, SeedPlan(students=args.students, series=12, exams_per_series=5, attempts_per_series=2))
        with engine.connect() as conn:
            seeded_max_id = conn.execute(sqlalchemy.select(sqlalchemy.func.max(Attempt.id))).scalar_one()
        with tempfile.TemporaryDirectory(prefix="rollguard-burst-") as work:
            for _ in range(args.repeats):
                for label in rounds:
                    loads.append(os.getloadavg()[0])
                    if arms:
                        figures = round_in_tree(
                            REPO,
                            url,
                            students=args.students,
                            threads=args.threads,
                            settings=arms[label],
                        )
                    elif args.baseline_tree:
                        tree = REPO if label == "this" else args.baseline_tree.resolve()
                        figures = round_in_tree(tree, url, students=args.students, threads=args.threads)
                    else:
                        figures = one_round(
                            url,
                            grouped=label == "grouped",
                            students=args.students,
                            threads=args.threads,
                            work=Path(work),
                        )
                    print(f"{label:10} {figures}", flush=True)
                    rounds[label].append(figures)
                    with engine.begin() as conn:
                        conn.execute(sqlalchemy.delete(Attempt).where(Attempt.id > seeded_max_id))
    finally:
        engine.dispose()
        servers.drop_database(args.postgres_url, name)
    summary = {
        label: {key: spread([float(r[key]) for r in runs]) for key in runs[0]}
        for label, runs in rounds.items()
    }
    for label, figures in summary.items():
        cells = "  ".join(f"{k} {v['min']:g}/{v['median']:g}/{v['max']:g}" for k, v in figures.items())
        print(f"{label:10} min/median/max: {cells}")
    first, second = labels
    # Per repetition (the two rounds of one repetition ran back to back), then the median.
    ratios = [
        a["portal_cpu_us_per_student"] / b["portal_cpu_us_per_student"]
        for a, b in zip(rounds[first], rounds[second], strict=True)
    ]
    print(f"portal CPU per student, {first}/{second}: median {statistics.median(ratios):.2f} of {ratios}")
    result = {
        "students": args.students,
        f"portal_cpu_ratio_{first}_to_{second}": spread([round(r, 3) for r in ratios]),
        "threads": args.threads,
        "repeats": args.repeats,
        "cache_layout": args.compare_layouts or args.cache_layout,
        "load_average_1m": spread(loads),
        "summary": summary,
        "rounds": rounds,
    }
    if args.baseline_tree:
        result["baseline_tree"] = str(args.baseline_tree)
        result["baseline_commit"] = commit_of(args.baseline_tree)
    result["commit"] = commit_of(REPO)
    command = f"python bench/portal_burst_cost.py --students {args.students} --threads {args.threads} --repeats {args.repeats}"
    if args.compare_write_through:
        command += f" --compare-write-through --cache-layout {args.cache_layout}"
    elif compared:
        command += f" --compare-layouts {args.compare_layouts}"
    else:
        command += f" --cache-layout {args.cache_layout}"
    if args.baseline_tree:
        command += f" --baseline-tree {args.baseline_tree}"
    command += f" --result {args.result}"
    print(f"wrote {write_result(args.result, result, command=command)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
