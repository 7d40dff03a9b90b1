"""Mass submission, direct vs optimized: the incident's spike replayed against a real portal.

For each of 500 and 2,000 virtual users, starts a freshly seeded portal
(gunicorn, SQLite, pool of 20) with the optimization off, runs
`rollguard traffic run --scenario mass-submission` against it, then does the
same with the optimization on. Writes bench/results/portal_mass_submission.json
and prints a table: backend calls, reduction, C_min and eta, p95, peak pool in
use, cache bytes, errors and stale reads.

    .venv/bin/python bench/portal_mass_submission.py [--users 500,2000] [--duration 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import servers  # noqa: E402
from bench.machine import write_result  # noqa: E402
from portal.db import make_engine  # noqa: E402
from portal.seed import SeedPlan, seed  # noqa: E402
from rollguard import ROLLGUARD, Child  # noqa: E402


def start_portal(db_path: Path, work: Path, *, optimize: bool) -> tuple[Child, str]:
    env = {
        "ROLLGUARD_PORTAL_DATABASE_URL": f"sqlite:///{db_path}",
        "ROLLGUARD_PORTAL_OPTIMIZE": "on" if optimize else "off",
        "ROLLGUARD_VAR_DIR": str(work / "var"),
        "ROLLGUARD_LOG_LEVEL": "WARNING",
    }
    return servers.serve(
        lambda port: [*ROLLGUARD, "portal", "serve", "--port", str(port)],
        ready_path="/healthz",
        log_path=work / f"{db_path.stem}.log",
        env=env,
    )


def run_one(
    template: Path, work: Path, *, users: int, duration: float, optimize: bool
) -> dict[str, Any] | None:
    """One traffic run against a fresh portal; None if the run failed (its stderr went to ours)."""
    mode = "optimized" if optimize else "direct"
    db = work / f"portal-{mode}-{users}.db"
    shutil.copy(template, db)
    proc, url = start_portal(db, work, optimize=optimize)
    try:
        print(f"-- {mode}, {users} users, {duration:g}s", file=sys.stderr, flush=True)
        summary = servers.run_traffic(url, users=users, duration_s=duration, timeout_s=duration + 180)
    finally:
        proc.stop()
    return summary


def row(summary: dict[str, Any] | None) -> dict[str, Any]:
    if summary is None:
        return dict.fromkeys(FIELDS) | {"failed": True}
    ideal = summary["ideal"]
    return {
        "requests": summary["requests"],
        "errors": summary["errors"],
        "page_loads": sum(summary["page_loads"].values()),
        "submissions": summary["submissions"],
        "logical_calls": summary["logical_calls"],
        "backend_calls": summary["backend_calls"],
        "key_fetches": summary["key_fetches"],
        "call_reduction": summary["call_reduction"],
        "c_min": ideal.get("c_min"),
        "eta": None if ideal.get("eta") is None else round(ideal["eta"], 4),
        "tau_s": ideal.get("tau_s"),
        "db_queries": summary["db_queries"],
        "p50_ms": summary["latency"]["p50_ms"],
        "p95_ms": summary["latency"]["p95_ms"],
        "p99_ms": summary["latency"]["p99_ms"],
        "pages_p95_ms": {page: v["p95_ms"] for page, v in summary["latency_by_page"].items()},
        "peak_pool_in_use": summary["peak_pool_in_use"],
        "pool_capacity": summary["pool_capacity"],
        "cache_bytes": summary["cache_bytes"],
        "stale_reads": summary["stale_reads"],
        "wall_s": summary["wall_s"],
    }


FIELDS = [
    "requests",
    "errors",
    "logical_calls",
    "backend_calls",
    "key_fetches",
    "call_reduction",
    "c_min",
    "eta",
    "db_queries",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "peak_pool_in_use",
    "cache_bytes",
    "stale_reads",
]


def print_table(results: dict[str, dict[str, Any]]) -> None:
    columns = list(results)
    width = max(len(c) for c in columns) + 2
    print("metric".ljust(18) + "".join(c.rjust(width) for c in columns))
    for name in FIELDS:
        cells = []
        for column in columns:
            value = results[column][name]
            cells.append(
                ("-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)).rjust(
                    width
                )
            )
        print(name.ljust(18) + "".join(cells))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", default="500,2000", help="comma-separated virtual user counts")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per run")
    args = parser.parse_args()
    user_counts = [int(u) for u in args.users.split(",")]
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="rollguard-bench-"))
    try:
        template = work / "template.db"
        engine = make_engine(f"sqlite:///{template}")
        plan = SeedPlan(students=max(user_counts), series=12, exams_per_series=5, attempts_per_series=2)
        seed(engine, plan)
        engine.dispose()
        results: dict[str, dict[str, Any]] = {}
        for users in user_counts:
            for optimize in (False, True):
                label = f"{'optimized' if optimize else 'direct'}-{users}"
                results[label] = row(
                    run_one(template, work, users=users, duration=args.duration, optimize=optimize)
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(results)
    figures = {
        "scenario": "mass-submission",
        "duration_s": args.duration,
        "seed": {
            "students": plan.students,
            "series": plan.series,
            "attempts_per_series": plan.attempts_per_series,
        },
        "portal": "gunicorn gthread, 1 worker x 64 threads, SQLite (WAL), pool 20 + 0",
        "load_generator": "rollguard traffic run (locust users on portal.leanhttp connections) in one process on the same machine",
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "runs": results,
    }
    path = write_result(
        "portal_mass_submission",
        figures,
        command=f"python bench/portal_mass_submission.py --users {args.users} --duration {args.duration:g}",
    )
    print(f"wrote {path}")
    return 1 if any(r.get("failed") for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
