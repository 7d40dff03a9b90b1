"""Start and stop the servers a benchmark measures: free ports, readiness, process groups.

The flag-service, portal and dashboard benchmarks run `rollguard` servers as
subprocesses in their own session and call these.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time

import httpx
import sqlalchemy


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(proc: subprocess.Popen[bytes], url: str, *, timeout_s: float) -> bool:
    """Poll `url` until it answers 200; False when `proc` exits or `timeout_s` passes first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate the server's process group; kill it when it has not gone after 15 s."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


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
