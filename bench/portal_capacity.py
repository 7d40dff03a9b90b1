"""Capacity of the portal under the mass submission: the floor, direct and optimized, side by side.

For every user count of a ladder and every run, starts a fresh server for each
mode in turn (interleaved: floor, direct, optimized, baseline in even runs, the
reverse in odd ones, so that no mode always runs right after another) and replays
`rollguard traffic run --scenario mass-submission` against it:

- floor: bench/floor.py, the same gunicorn server answering each page with a
  constant body of a page's size: what the server stack and the load generator
  cost on their own;
- direct / optimized: `rollguard portal serve` on a PostgreSQL database of the
  bench's own (created, seeded and dropped here), the optimizer off / on;
- baseline (with `--baseline-tree PATH`, another checkout such as an earlier
  commit): that tree's portal, optimized, and that tree's load generator, both
  started from that tree, so that a change to either is measured against the
  code before it in the same run.

With `--warm`, every student's MyTestSeries is loaded once before the traffic
starts (not measured): the mass submission then meets a cache that holds what
students had been browsing before the deadline, instead of an empty one.

Each cell reports pages/s, p50/p95/p99 of every request, errors, backend calls,
and the CPU seconds of the server (master and workers), of PostgreSQL's
processes (the floor uses none; other clients of the same server add to it)
and of the load generator while its users ran. A mode's capacity is the largest user count whose median p95 over
the runs is under --p95-ms with no error in any run. Writes
bench/results/portal_capacity.json.

    .venv/bin/python bench/portal_capacity.py [--users 50,200,500,1000,1500,2000] [--duration 20] [--runs 3]
    .venv/bin/python bench/portal_capacity.py --users 500,2000 --duration 10 --runs 1   # a quick look
    .venv/bin/python bench/portal_capacity.py --users 500,1000 --direct-users 50,100   # direct on its own ladder
    .venv/bin/python bench/portal_capacity.py --users 500 --modes optimized --baseline-tree ../base   # A/B
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import psutil  # noqa: E402
import sqlalchemy  # noqa: E402

from bench import servers  # noqa: E402
from bench.floor import page_sizes  # noqa: E402
from bench.machine import commit_of, write_result  # noqa: E402
from bench.portal_burst_cost import postgres_cpu, postgres_cpu_since  # noqa: E402
from portal.db import make_engine  # noqa: E402
from portal.models import Attempt  # noqa: E402
from portal.seed import SeedPlan, seed  # noqa: E402
from portal.server import DEFAULT_SERVER, SERVERS  # noqa: E402
from rollguard import ROLLGUARD, Child  # noqa: E402

MODES = ("floor", "direct", "optimized", "baseline")
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

T = TypeVar("T")


@dataclass(frozen=True)
class Stack:
    """How every server of the bench runs."""

    server: str
    workers: int
    threads: int
    database_url: str
    work: Path
    baseline_tree: Path | None = None
    warm: bool = False


def stack_label(mode: str, stack: Stack, worker_counts: list[int], thread_counts: list[int]) -> str:
    """A cell's mode when several stacks are compared: `optimized/granianx2` (workers), `...t16` (threads)."""
    label = f"{mode}/{stack.server}"
    if len(worker_counts) > 1:
        label += f"x{stack.workers}"
    if len(thread_counts) > 1:
        label += f"t{stack.threads}"
    return label


def server_command(mode: str, port: int, stack: Stack) -> list[str]:
    sizing = ["--server", stack.server, "--workers", str(stack.workers), "--threads", str(stack.threads)]
    if mode == "floor":
        return [sys.executable, str(REPO / "bench" / "floor.py"), "--port", str(port), *sizing]
    return [*ROLLGUARD, "portal", "serve", "--port", str(port), *sizing]


def start_server(mode: str, stack: Stack, settings: Mapping[str, str] | None = None) -> tuple[Child, str]:
    """A fresh server of `mode` (the portal with `settings`, environment variables, over the bench's own)."""
    env = {
        "ROLLGUARD_PORTAL_DATABASE_URL": stack.database_url,
        "ROLLGUARD_PORTAL_OPTIMIZE": "off" if mode == "direct" else "on",
        "ROLLGUARD_VAR_DIR": str(stack.work / "var"),
        "ROLLGUARD_LOG_LEVEL": "WARNING",
        **(settings or {}),
    }
    return servers.serve(
        lambda port: server_command(mode, port, stack),
        ready_path="/healthz",
        log_path=stack.work / f"{mode}-{time.monotonic_ns()}.log",
        env=env,
        cwd=tree_of(mode, stack),
    )


def tree_of(mode: str, stack: Stack) -> Path:
    """The checkout a mode's server and load generator run from: `python -m rollguard` imports the tree it starts in."""
    return stack.baseline_tree if mode == "baseline" and stack.baseline_tree else REPO


def warm_pages(url: str, users: int) -> None:
    """Load MyTestSeries once for students 1..users (the traffic's), 8 at a time."""

    def load(student: int) -> None:
        response = client.get(f"{url}/api/pages/my-test-series", params={"student_id": student})
        response.raise_for_status()

    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(8) as pool:
        list(pool.map(load, range(1, users + 1)))


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live descendants (the gunicorn master and workers)."""
    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def run_cell(mode: str, users: int, *, duration: float, stack: Stack) -> dict[str, Any]:
    """One traffic run against a fresh server of `mode`; the figures of the cell."""
    proc, url = start_server(mode, stack)
    load = os.getloadavg()[0]
    try:
        server_cpu, pg_cpu = cpu_seconds(proc.pid), postgres_cpu()
        print(f"-- {mode}, {users} users, {duration:g}s (load {load:.2f})", file=sys.stderr, flush=True)
        if stack.warm:
            warm_pages(url, users)
        summary = servers.run_traffic(
            url,
            users=users,
            duration_s=duration,
            settle_s=15,
            timeout_s=duration + 300,
            cwd=tree_of(mode, stack),
        )
        server_cpu = cpu_seconds(proc.pid) - server_cpu
        pg_seconds = postgres_cpu_since(pg_cpu)
    finally:
        proc.stop()
    pages = sum(summary["page_loads"].values())
    requests = summary["requests"]
    loadgen_cpu = summary["client_cpu_s"]
    return {
        "mode": mode,
        "users": users,
        "load_average_1m": round(load, 2),
        "wall_s": summary["wall_s"],
        "requests": requests,
        "pages": pages,
        "pages_per_s": round(pages / summary["wall_s"], 1),
        "p50_ms": summary["latency"]["p50_ms"],
        "p95_ms": summary["latency"]["p95_ms"],
        "p99_ms": summary["latency"]["p99_ms"],
        # Which requests make the tail: the floor answers every page alike, the portal does not.
        "p95_ms_by_page": {page: figures["p95_ms"] for page, figures in summary["latency_by_page"].items()},
        "errors": summary["errors"],
        "stale_reads": summary["stale_reads"],
        "fresh_connection_stale_reads": summary["fresh_connection_stale_reads"],
        "backend_calls": summary["backend_calls"],
        "server_cpu_s": round(server_cpu, 2),
        "postgres_cpu_s": round(pg_seconds, 2),
        "loadgen_cpu_s": round(loadgen_cpu, 2),
        "loadgen_cpu_ms_per_request": round(1000 * loadgen_cpu / requests, 3) if requests else None,
    }


def in_run_order(run: int, items: list[T]) -> list[T]:
    """`items` in the order run number `run` takes them: reversed every other run.

    A cell runs right after the one before it on the same database and machine;
    in a fixed order the same mode would always follow the same other mode, and
    an A/B would measure its place in the order as well: in a fixed order the
    four-writer portal, always run second, was lower than the one-writer portal
    in 9 of 9 pairs; alternating, the one-writer portal was lower in 6 of 12
    (the README's rows for `portal_capacity_one_writer` and `..._abba`).
    """
    return items if run % 2 == 0 else items[::-1]


def reset_attempts(engine: sqlalchemy.Engine, seeded_max_id: int) -> None:
    """Remove the attempts a run submitted, so that every run starts from the same data."""
    with engine.begin() as conn:
        conn.execute(sqlalchemy.delete(Attempt).where(Attempt.id > seeded_max_id))


def spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def summarize(cells: list[dict[str, Any]], *, p95_ms: float) -> dict[str, Any]:
    """Per mode and user count: min/median/max of each figure; per mode: the capacity."""
    table: dict[str, dict[str, Any]] = {}
    capacity: dict[str, int] = {}
    for mode in dict.fromkeys(c["mode"] for c in cells):
        table[mode] = {}
        capacity[mode] = 0
        for users in sorted({c["users"] for c in cells if c["mode"] == mode}):
            runs = [c for c in cells if c["mode"] == mode and c["users"] == users]
            figures = {
                name: spread([float(r[name]) for r in runs if r[name] is not None])
                for name in (
                    "pages_per_s",
                    "p50_ms",
                    "p95_ms",
                    "p99_ms",
                    "backend_calls",
                    "server_cpu_s",
                    "postgres_cpu_s",
                    "loadgen_cpu_s",
                    "loadgen_cpu_ms_per_request",
                    "load_average_1m",
                )
            }
            errors = sum(r["errors"] for r in runs)
            stale = sum(r["stale_reads"] for r in runs)
            p95 = figures["p95_ms"]
            carried = errors == 0 and p95 is not None and p95["median"] < p95_ms
            table[mode][str(users)] = {"runs": len(runs), "errors": errors, "stale_reads": stale} | figures
            table[mode][str(users)]["carried"] = carried
            if carried:
                capacity[mode] = max(capacity[mode], users)
    return {"by_mode": table, "capacity": capacity, "ratios": ratios(capacity)}


def ratios(capacity: dict[str, int]) -> dict[str, float | None]:
    """optimized/floor and optimized/direct, per server when several were compared."""
    out: dict[str, float | None] = {}
    for label, optimized in capacity.items():
        mode, _, server = label.partition("/")
        if mode != "optimized":
            continue
        suffix = f"/{server}" if server else ""
        for base in ("floor", "direct", "baseline"):
            if f"{base}{suffix}" in capacity:
                below = capacity[f"{base}{suffix}"]
                out[f"optimized_over_{base}{suffix}"] = round(optimized / below, 2) if below else None
    return out


def print_table(summary: dict[str, Any]) -> None:
    header = f"{'mode':20}{'users':>7}{'pages/s':>9}{'p50':>8}{'p95 (min/med/max)':>26}{'p99':>9}"
    header += f"{'errors':>8}{'backend':>9}{'cpu srv':>9}{'cpu pg':>8}{'cpu gen':>9}{'gen ms/req':>11}"
    print(header)
    for mode, rows in summary["by_mode"].items():
        for users, row in rows.items():
            p95 = row["p95_ms"] or {}
            print(
                f"{mode:20}{users:>7}{_med(row, 'pages_per_s'):>9}{_med(row, 'p50_ms'):>8}"
                f"{p95.get('min', 0):>8.0f}/{p95.get('median', 0):>7.0f}/{p95.get('max', 0):>7.0f}"
                f"{_med(row, 'p99_ms'):>11}{row['errors']:>8}{_med(row, 'backend_calls'):>9}"
                f"{_med(row, 'server_cpu_s', '.1f'):>9}{_med(row, 'postgres_cpu_s', '.1f'):>8}"
                f"{_med(row, 'loadgen_cpu_s', '.1f'):>9}"
                f"{_med(row, 'loadgen_cpu_ms_per_request', '.3f'):>11}"
            )
    print(f"capacity (median p95 < limit, 0 errors): {summary['capacity']}  ratios: {summary['ratios']}")


def _med(row: dict[str, Any], name: str, fmt: str = ".0f") -> str:
    value = row.get(name)
    return "-" if not value else format(value["median"], fmt)


@contextmanager
def seeded_database(postgres_url: str, plan: SeedPlan) -> Iterator[tuple[sqlalchemy.Engine, str, int]]:
    """A database of the bench's own on `postgres_url`'s server, seeded with `plan`, dropped at the end:
    its engine, its URL and the id of the last attempt seeded (`reset_attempts` keeps those)."""
    name = f"rg_capacity_{secrets.token_hex(4)}"
    admin = sqlalchemy.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    base, _, _ = postgres_url.rpartition("/")
    engine = make_engine(f"{base}/{name}")
    try:
        seed(engine, plan)
        with engine.connect() as conn:
            seeded_max_id = int(conn.execute(sqlalchemy.select(sqlalchemy.func.max(Attempt.id))).scalar_one())
        yield engine, f"{base}/{name}", seeded_max_id
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", default="50,200,500,1000,1500,2000", help="the ladder of user counts")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of traffic per cell")
    parser.add_argument(
        "--direct-users",
        default=None,
        help="the direct path's own ladder (it collapses far below the others); default: --users",
    )
    parser.add_argument("--runs", type=int, default=3, help="repetitions of the whole ladder")
    parser.add_argument(
        "--modes",
        default="floor,direct,optimized",
        help="of floor,direct,optimized (baseline: see --baseline-tree)",
    )
    parser.add_argument(
        "--servers",
        default=DEFAULT_SERVER,
        help=f"WSGI servers to compare, interleaved too (of {','.join(SERVERS)})",
    )
    parser.add_argument(
        "--workers",
        default="1",
        help="worker processes of every server; several counts are compared, interleaved",
    )
    parser.add_argument(
        "--threads",
        default="64",
        help="threads per worker; several counts are compared, interleaved",
    )
    parser.add_argument(
        "--baseline-tree",
        type=Path,
        default=None,
        help="another checkout whose optimized portal runs as mode 'baseline', interleaved with the others",
    )
    parser.add_argument(
        "--warm",
        action="store_true",
        help="load every student's MyTestSeries once before each cell's traffic (students were browsing)",
    )
    parser.add_argument("--result", default="portal_capacity", help="name of the bench/results/<name>.json")
    parser.add_argument("--p95-ms", type=float, default=200.0, help="the latency limit of capacity")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("ROLLGUARD_TEST_POSTGRES_URL", DEFAULT_POSTGRES),
        help="a server where the bench may create and drop a database of its own",
    )
    args = parser.parse_args()
    ladder = [int(u) for u in args.users.split(",")]
    direct_ladder = [int(u) for u in args.direct_users.split(",")] if args.direct_users else ladder
    modes = [m for m in args.modes.split(",") if m]
    if args.baseline_tree is not None:
        if not (args.baseline_tree / "rollguard" / "__main__.py").is_file():
            parser.error(f"--baseline-tree {args.baseline_tree}: not a checkout of this project")
        modes = [*dict.fromkeys([*modes, "baseline"])]
    elif "baseline" in modes:
        parser.error("mode 'baseline' needs --baseline-tree")
    server_names = [s for s in args.servers.split(",") if s]
    worker_counts = [int(w) for w in args.workers.split(",") if w]
    thread_counts = [int(t) for t in args.threads.split(",") if t]
    if unknown := set(modes) - set(MODES) | set(server_names) - set(SERVERS):
        parser.error(f"unknown modes or servers {sorted(unknown)}")
    load_before = os.getloadavg()
    cells: list[dict[str, Any]] = []
    plan = SeedPlan(
        students=max(ladder + direct_ladder), series=12, exams_per_series=5, attempts_per_series=2
    )
    with (
        seeded_database(args.postgres_url, plan) as (engine, database_url, seeded_max_id),
        tempfile.TemporaryDirectory(prefix="rollguard-capacity-") as work,
    ):
        stacks = [
            Stack(s, w, t, database_url, Path(work), args.baseline_tree, args.warm)
            for s in server_names
            for w in worker_counts
            for t in thread_counts
        ]
        for run in range(args.runs):
            for users in sorted(set(ladder) | set(direct_ladder)):
                for stack in in_run_order(run, stacks):
                    for mode in in_run_order(run, modes):
                        if users not in (direct_ladder if mode == "direct" else ladder):
                            continue
                        cell = run_cell(mode, users, duration=args.duration, stack=stack)
                        if len(stacks) > 1:
                            cell["mode"] = stack_label(mode, stack, worker_counts, thread_counts)
                        cells.append(cell)
                        reset_attempts(engine, seeded_max_id)
    summary = summarize(cells, p95_ms=args.p95_ms)
    print_table(summary)
    figures = {
        "scenario": "mass-submission"
        + (", cache warmed with every student's MyTestSeries" if args.warm else ""),
        "duration_s": args.duration,
        "runs": args.runs,
        "p95_limit_ms": args.p95_ms,
        "seed": {"students": plan.students, "series": plan.series, "attempts_per_series": 2},
        "server": f"{args.servers}, {args.workers} worker(s) x {args.threads} threads",
        "database": "PostgreSQL (a database of the bench's own), pool 20 + 0",
        "floor_page_bytes": page_sizes(),
        "load_generator": "rollguard traffic run (locust users on portal.leanhttp connections, one process) on the same machine",
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        **summary,
        "cells": cells,
    }
    command = (
        f"python bench/portal_capacity.py --users {args.users} --duration {args.duration:g} "
        + (f"--direct-users {args.direct_users} " if args.direct_users else "")
        + f"--runs {args.runs} --modes {args.modes} --servers {args.servers} --workers {args.workers} --threads {args.threads}"
        + (f" --baseline-tree {args.baseline_tree}" if args.baseline_tree else "")
        + (" --warm" if args.warm else "")
    )
    figures["commit"] = commit_of(REPO)
    if args.baseline_tree is not None:
        figures["baseline_commit"] = commit_of(args.baseline_tree)
    path = write_result(args.result, figures, command=command + f" --result {args.result}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
