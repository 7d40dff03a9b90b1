"""The servers a benchmark measures, on free loopback ports, and its throwaway databases.

Processes are `rollguard.processes` children: each in a process group of its
own, logged to a file, stopped (SIGTERM, then SIGKILL) with `Child.stop()`.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy

from rollguard import ROLLGUARD, Child, free_port, start_child

REPO = Path(__file__).resolve().parent.parent


def serve(
    argv: Callable[[int], Sequence[str]],
    *,
    ready_path: str,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 60.0,
    cwd: Path = REPO,
) -> tuple[Child, str]:
    """Start `argv(port)` on a free port; once `ready_path` answers, the process and its URL.

    :raise ChildFailed: it exited or was not ready in time (stopped; the end of its log in the message).
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    child = start_child(argv(port), log_path=log_path, env=env, cwd=cwd)
    child.wait_ready(url=f"{url}{ready_path}", timeout=timeout_s)
    return child, url


def serve_flags(
    log_path: Path, env: Mapping[str, str], *, timeout_s: float = 60.0, cwd: Path = REPO
) -> tuple[Child, str]:
    """`rollguard flags serve` on a free loopback port, once `/readyz` answers: the process and its URL."""
    return serve(
        lambda port: [*ROLLGUARD, "flags", "serve", "--host", "127.0.0.1", "--port", str(port)],
        ready_path="/readyz",
        log_path=log_path,
        env=env,
        timeout_s=timeout_s,
        cwd=cwd,
    )


def run_traffic(
    url: str,
    *,
    users: int,
    duration_s: float,
    timeout_s: float,
    scenario: str = "mass-submission",
    settle_s: float | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path = REPO,
) -> dict[str, Any]:
    """Run `rollguard traffic run` against `url` to its end; the summary it writes (`--json-out`).

    `cwd`: the checkout whose load generator runs (`python -m rollguard` imports the tree it starts in).
    """
    argv = [*ROLLGUARD, "traffic", "run", "--scenario", scenario, "--target", url]
    argv += ["--users", str(users), "--duration", str(duration_s)]
    if settle_s is not None:
        argv += ["--settle", str(settle_s)]
    with tempfile.TemporaryDirectory(prefix="rollguard-traffic-") as tmp:
        out = Path(tmp) / "summary.json"
        subprocess.run(
            [*argv, "--json-out", str(out)],
            cwd=cwd,
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=timeout_s,
            env={**os.environ, "ROLLGUARD_LOG_LEVEL": "WARNING", **(env or {})},
        )
        summary: dict[str, Any] = json.loads(out.read_text())
    return summary


def create_database(postgres_url: str) -> tuple[str, str]:
    """Create a throwaway database on the PostgreSQL server of `postgres_url`; return its name and URL."""
    name = f"rg_bench_{secrets.token_hex(4)}"
    _on_server(postgres_url, f'CREATE DATABASE "{name}"')
    return name, f"{postgres_url.rpartition('/')[0]}/{name}"


def drop_database(postgres_url: str, name: str) -> None:
    """Drop a database `create_database` made, ending its connections."""
    _on_server(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _on_server(postgres_url: str, statement: str) -> None:
    server = sqlalchemy.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as conn:
            conn.execute(sqlalchemy.text(statement))
    finally:
        server.dispose()
