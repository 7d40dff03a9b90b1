"""How fast a change made through one flag service process is served by another.

Starts two `rollguard flags serve` processes (gunicorn, default workers) on one
fresh PostgreSQL database, changes a flag's rollout through the first one and
polls the second one's /api/client/features until it serves the new value.
Prints the delays and writes bench/results/flags_propagation.json.

    .venv/bin/python bench/flags_propagation.py [--changes 30] [--postgres URL]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import servers  # noqa: E402
from bench.machine import write_result  # noqa: E402
from flags.client import FlagsClient  # noqa: E402
from rollguard import Child, stop_children  # noqa: E402


def _serve(database_url: str, admin: str, client: str, log: Path) -> tuple[Child, str]:
    env = {
        "ROLLGUARD_DATABASE_URL": database_url,
        "ROLLGUARD_ADMIN_TOKEN": admin,
        "ROLLGUARD_CLIENT_TOKEN": client,
        "ROLLGUARD_LOG_LEVEL": "WARNING",
    }
    return servers.serve_flags(log, env, timeout_s=30)


def _served_rollout(http: httpx.Client, url: str, client: str) -> str:
    body = http.get(f"{url}/api/client/features", headers={"Authorization": client}).json()
    feature = next(f for f in body["features"] if f["name"] == "propagation")
    return str(feature["strategies"][0]["parameters"]["rollout"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=30)
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "ROLLGUARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args()
    name, database_url = servers.create_database(args.postgres)
    admin, client = "admin-" + secrets.token_hex(8), "client-" + secrets.token_hex(8)
    delays: list[float] = []
    procs: list[Child] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            writer_proc, writer_url = _serve(database_url, admin, client, Path(tmp) / "a.log")
            procs.append(writer_proc)
            reader_proc, reader_url = _serve(database_url, admin, client, Path(tmp) / "b.log")
            procs.append(reader_proc)
            with FlagsClient(writer_url, admin, actor="bench") as flags, httpx.Client() as http:
                flags.create_flag("propagation", enabled=True, rollout=0)
                for i in range(args.changes):
                    rollout = (i % 99) + 1
                    flags.set_rollout("propagation", rollout)
                    started = time.monotonic()
                    while _served_rollout(http, reader_url, client) != str(rollout):
                        if time.monotonic() - started > 10:
                            raise SystemExit(f"change {i} not served after 10 s")
                    delays.append(time.monotonic() - started)
    finally:
        stop_children(procs)
        servers.drop_database(args.postgres, name)
    figures = {
        "changes": len(delays),
        "median_ms": round(statistics.median(delays) * 1000, 1),
        "max_ms": round(max(delays) * 1000, 1),
        "mean_ms": round(statistics.fmean(delays) * 1000, 1),
    }
    print(
        f"served by the other process after: median {figures['median_ms']} ms, "
        f"max {figures['max_ms']} ms over {figures['changes']} changes"
    )
    path = write_result(
        "flags_propagation", figures, command="python bench/flags_propagation.py " + " ".join(sys.argv[1:])
    )
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
