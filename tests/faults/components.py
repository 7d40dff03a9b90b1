"""Private PostgreSQL and Redis servers the fault tests can restart, pause and kill.

Each runs on a free loopback port in a directory of its own, so the shared
servers other tests use are never touched. `PrivatePostgres` is a real cluster
made with Debian's `initdb`/`pg_ctl` (run as the `postgres` user when the tests
run as root, which `initdb` refuses); `PrivateRedis` is a `redis-server`
child in its own process group. `ConnectionCutter` terminates the backend of
one statement as it is about to run: a connection lost in the middle of a request.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psycopg
import redis
from sqlalchemy import Engine, event

from rollguard import Child, free_port
from tests.support import missing, require_binary, start_process, wait_until


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        missing("PostgreSQL server binaries (initdb, pg_ctl) are not installed under /usr/lib/postgresql")
    return Path(found[-1]).parent


class PrivatePostgres:
    """A PostgreSQL cluster of one test: start, restart, terminate backends, stop."""

    def __init__(self) -> None:
        self._bin = _postgres_bin()
        self._as_postgres = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="rg-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        argv = [str(self._bin / tool), *args]
        if self._as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        subprocess.run(argv, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=on"
        self._run("pg_ctl", "start", "-w", "-D", str(self.data), "-l", str(self.root / "log"), "-o", options)
        wait_until(self.answers, what="the private PostgreSQL to accept connections")

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-w", "-D", str(self.data), "-m", mode)

    def restart(self) -> None:
        """Stop the server (fast: every connection is cut) and start it again."""
        self.stop("fast")
        self.start()

    def answers(self) -> bool:
        try:
            with psycopg.connect(self._dsn, connect_timeout=1) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def terminate_backends(self) -> int:
        """Terminate every client backend but this one; the number terminated."""
        with psycopg.connect(self._dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
            ).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


class PrivateRedis:
    """A redis-server of one test: pause (SIGSTOP), resume, kill, restart on the same port."""

    def __init__(self) -> None:
        self._binary = require_binary("redis-server")
        self.root = Path(tempfile.mkdtemp(prefix="rg-redis-"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: Child | None = None
        self.start()

    def start(self) -> None:
        argv = [
            self._binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        self.process = start_process([*argv, "--dir", str(self.root)], log_path=self.root / "redis.log")
        self.process.wait_ready(check=self.answers, timeout=20)

    def answers(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def pause(self) -> None:
        assert self.process is not None
        self.process.signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.signal(signal.SIGCONT)

    def kill(self) -> None:
        """Kill the server at once (its data is gone: nothing is saved)."""
        if self.process is not None:
            self.process.kill()
            self.process = None

    def restart(self) -> None:
        """Kill the server and start an empty one on the same port."""
        self.kill()
        self.start()

    def close(self) -> None:
        if self.process is not None:
            self.resume()
            self.kill()
        shutil.rmtree(self.root, ignore_errors=True)


class ConnectionCutter:
    """Terminates, once, the backend that is about to run the first statement containing `text`.

    The statement then fails as it would if PostgreSQL restarted or an operator
    terminated the backend at that moment.
    """

    def __init__(self, engine: Engine, text: str) -> None:
        self._engine = engine
        self._text = text
        self._dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.cut = 0
        #: Statements containing `text` that were sent, the one cut included: 2 means it ran again.
        self.runs = 0
        event.listen(engine, "before_cursor_execute", self._before)

    def _before(self, _conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        if self._text not in statement:
            return
        self.runs += 1
        if self.cut:
            return
        self.cut += 1
        with psycopg.connect(self._dsn, autocommit=True) as admin:
            # Waits (up to 10 s) until the backend is gone.
            admin.execute("SELECT pg_terminate_backend(%s, 10000)", (cursor.connection.info.backend_pid,))

    def close(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._before)
