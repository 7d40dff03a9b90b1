"""A burst of submissions on PostgreSQL: written one commit each, or grouped by `portal.submits.AttemptWriter`.

A mass submission's submits each need their attempt committed to disk before
they are acknowledged. This seeds a PostgreSQL database of its own (created and
dropped here), then `--threads` threads (the portal's request threads) record
`--submits` attempts as fast as they can through the portal's pool, first one
commit per submit (`portal.data.record_attempt`, as before grouping), then
grouped, interleaved, `--repeats` rounds each. It reports submits/s and the
p50/p95/max of a submit, and how many commits the grouped rounds made. Writes
bench/results/portal_submits.json.

    .venv/bin/python bench/portal_submits.py [--submits 2000] [--threads 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy import Engine  # noqa: E402

from bench.bursts import spread, timed_burst  # noqa: E402
from bench.machine import write_result  # noqa: E402
from bench.servers import create_database, drop_database  # noqa: E402
from portal import data  # noqa: E402
from portal.db import make_engine  # noqa: E402
from portal.seed import SeedPlan, seed  # noqa: E402
from portal.submits import AttemptWriter  # noqa: E402

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
STUDENTS = 500
Record = Callable[[int], object]


def one_round(record: Record, *, submits: int, threads: int) -> dict[str, float]:
    found = timed_burst(lambda n: record(n % STUDENTS + 1), count=submits, threads=threads)
    found["submits_per_s"] = found.pop("per_s")
    return found


def recorders(engine: Engine, writer: AttemptWriter) -> dict[str, Record]:
    def alone(student: int) -> object:
        return data.record_attempt(engine, student_id=student, series_id=1, exam_id=1, score=50)

    def grouped(student: int) -> object:
        return writer.record(student_id=student, series_id=1, exam_id=1, score=50)

    return {"one_commit_each": alone, "grouped": grouped}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submits", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--postgres-url", default=os.environ.get("ROLLGUARD_TEST_POSTGRES_URL", DEFAULT_POSTGRES)
    )
    args = parser.parse_args()
    name, url = create_database(args.postgres_url)
    load = os.getloadavg()[0]
    rounds: dict[str, list[dict[str, float]]] = {"one_commit_each": [], "grouped": []}
    groups: list[int] = []
    try:
        engine = make_engine(url)
        seed(engine, SeedPlan(students=STUDENTS, series=1, exams_per_series=1, attempts_per_series=0))
        for n in range(args.repeats):
            writer = AttemptWriter(engine)
            for mode, record in recorders(engine, writer).items():
                found = one_round(record, submits=args.submits, threads=args.threads)
                print(f"round {n + 1} {mode}: {found}", flush=True)
                rounds[mode].append(found)
            groups.append(writer.groups)
        engine.dispose()
    finally:
        drop_database(args.postgres_url, name)
    figures: dict[str, Any] = {
        "submits": args.submits,
        "threads": args.threads,
        "pool": "the portal's (20 connections)",
        "load_average_1m_before_after": [round(load, 2), round(os.getloadavg()[0], 2)],
        "commits_per_grouped_round": groups,
        "rounds": rounds,
        **{
            mode: {key: spread([r[key] for r in found]) for key in ("submits_per_s", "p50_ms", "p95_ms")}
            for mode, found in rounds.items()
        },
    }
    median = {mode: figures[mode]["submits_per_s"]["median"] for mode in rounds}
    figures["grouped_over_one_commit_each"] = round(median["grouped"] / median["one_commit_each"], 2)
    command = "python bench/portal_submits.py " + " ".join(sys.argv[1:])
    print(f"grouped / one commit each (median submits/s): {figures['grouped_over_one_commit_each']}")
    print(f"wrote {write_result('portal_submits', figures, command=command.strip())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
