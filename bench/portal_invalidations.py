"""Submits that must reach every worker under a burst: submits/s and how long each waits, by peer count.

The portal's workers share invalidations over PostgreSQL LISTEN/NOTIFY
(`portal.invalidation.PgInvalidations`): a group of submits is written in one
INSERT that also carries the NOTIFY of its keys, and each submit answers once
every other worker has dropped them and said so. This seeds a PostgreSQL
database of its own (created and dropped here), starts one worker's channel
and `--peers` listening ones in this process (each with its own connections,
as separate workers have), then `--threads` threads (the portal's request
threads) record `--submits` attempts through the portal's `AttemptWriter` and
wait for the confirmation, as `POST /api/exam/submit` does. It runs that with
no other worker and with `--peers`, interleaved, `--repeats` rounds each, and
reports submits/s and the p50/p95/max of a submit. Writes
bench/results/portal_invalidations.json.

    .venv/bin/python bench/portal_invalidations.py [--submits 2000] [--threads 64] [--peers 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy import Engine  # noqa: E402

from bench.bursts import spread, timed_burst  # noqa: E402
from bench.machine import write_result  # noqa: E402
from bench.servers import create_database, drop_database  # noqa: E402
from portal.db import make_engine  # noqa: E402
from portal.invalidation import PgInvalidations  # noqa: E402
from portal.seed import SeedPlan, seed  # noqa: E402
from portal.submits import AttemptWriter  # noqa: E402

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
STUDENTS = 500


def one_round(
    engine: Engine, dsn: str, channel: str, *, submits: int, threads: int, peers: int
) -> dict[str, Any]:
    others = [
        PgInvalidations(dsn, channel=channel, apply=lambda _t: None, listening=lambda _up: None)
        for _ in range(peers)
    ]
    worker = PgInvalidations(
        dsn, channel=channel, apply=lambda _t: None, listening=lambda _up: None, timeout_s=30
    )
    writer = AttemptWriter(engine, invalidations=worker)

    def submit(n: int) -> int:
        recorded = writer.record(student_id=n % STUDENTS + 1, series_id=1, exam_id=1, score=50)
        return writer.confirm(recorded)

    try:
        found = timed_burst(submit, count=submits, threads=threads)
    finally:
        for listening in [worker, *others]:
            listening.close()
    found["submits_per_s"] = found.pop("per_s")
    found["groups"] = writer.groups
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submits", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--peers", type=int, default=1, help="other workers that must confirm each submit")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--postgres-url", default=os.environ.get("ROLLGUARD_TEST_POSTGRES_URL", DEFAULT_POSTGRES)
    )
    args = parser.parse_args()
    if args.peers < 1:
        parser.error("--peers must be at least 1 (a round without peers runs beside it anyway)")
    name, url = create_database(args.postgres_url)
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    load = os.getloadavg()[0]
    modes = {"no_other_worker": 0, f"{args.peers}_peers": args.peers}
    rounds: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    try:
        engine = make_engine(url)
        seed(engine, SeedPlan(students=STUDENTS, series=1, exams_per_series=1, attempts_per_series=0))
        for n in range(args.repeats):
            for mode, peers in modes.items():
                found = one_round(
                    engine,
                    dsn,
                    f"bench_inv_{n}_{peers}",
                    submits=args.submits,
                    threads=args.threads,
                    peers=peers,
                )
                print(f"round {n + 1} {mode}: {found}", flush=True)
                rounds[mode].append(found)
        engine.dispose()
    finally:
        drop_database(args.postgres_url, name)
    figures: dict[str, Any] = {
        "submits": args.submits,
        "threads": args.threads,
        "peers": args.peers,
        "load_average_1m_before_after": [round(load, 2), round(os.getloadavg()[0], 2)],
        "rounds": rounds,
        **{
            mode: {
                key: spread([r[key] for r in found])
                for key in ("submits_per_s", "p50_ms", "p95_ms", "max_ms")
            }
            for mode, found in rounds.items()
        },
    }
    command = "python bench/portal_invalidations.py " + " ".join(sys.argv[1:])
    print(f"wrote {write_result('portal_invalidations', figures, command=command.strip())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
