"""Submits' invalidations between portal workers under a burst: publishes/s and how long each waits.

The portal's workers share invalidations over PostgreSQL LISTEN/NOTIFY
(`portal.invalidation.PgInvalidations`): a submit returns once every other
worker dropped the student's keys. A mass submission makes hundreds of submits
a second, all publishing through one connection per worker. This starts one
publishing channel and `--peers` listening ones in this process (each with its
own connections, as separate workers have), then `--threads` threads (the
portal's request threads) publish `--publishes` distinct tags as fast as they
can. It reports publishes/s and the p50/p95/max of a publish, per round, over
`--repeats` rounds. Writes bench/results/portal_invalidations.json.

    .venv/bin/python bench/portal_invalidations.py [--publishes 2000] [--threads 64] [--peers 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bursts import spread, timed_burst  # noqa: E402
from bench.machine import write_result  # noqa: E402
from bench.servers import create_database, drop_database  # noqa: E402
from portal.invalidation import PgInvalidations  # noqa: E402

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def one_round(dsn: str, channel: str, *, publishes: int, threads: int, peers: int) -> dict[str, Any]:
    others = [
        PgInvalidations(dsn, channel=channel, apply=lambda _t: None, listening=lambda _up: None)
        for _ in range(peers)
    ]
    publisher = PgInvalidations(
        dsn, channel=channel, apply=lambda _t: None, listening=lambda _up: None, timeout_s=30
    )
    try:
        found = timed_burst(lambda n: publisher.publish(f"student:{n}"), count=publishes, threads=threads)
    finally:
        for channel_ in [publisher, *others]:
            channel_.close()
    found["publishes_per_s"] = found.pop("per_s")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--publishes", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--peers", type=int, default=1, help="other workers that must confirm each publish")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--postgres-url", default=os.environ.get("ROLLGUARD_TEST_POSTGRES_URL", DEFAULT_POSTGRES)
    )
    args = parser.parse_args()
    name, url = create_database(args.postgres_url)
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    load = os.getloadavg()[0]
    rounds = []
    try:
        for n in range(args.repeats):
            found = one_round(
                dsn, f"bench_inv_{n}", publishes=args.publishes, threads=args.threads, peers=args.peers
            )
            print(f"round {n + 1}: {found}", flush=True)
            rounds.append(found)
    finally:
        drop_database(args.postgres_url, name)
    figures = {
        "publishes": args.publishes,
        "threads": args.threads,
        "peers": args.peers,
        "load_average_1m_before_after": [round(load, 2), round(os.getloadavg()[0], 2)],
        "rounds": rounds,
        **{
            key: spread([r[key] for r in rounds]) for key in ("publishes_per_s", "p50_ms", "p95_ms", "max_ms")
        },
    }
    command = "python bench/portal_invalidations.py " + " ".join(sys.argv[1:])
    print(f"wrote {write_result('portal_invalidations', figures, command=command.strip())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
