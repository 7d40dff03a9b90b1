"""Helpers the tests share: free ports, waiting on real servers, subprocess servers."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
ROLLGUARD = [sys.executable, "-m", "rollguard"]
#: Set in the environment of the test run (tests/conftest.py); every process a test starts inherits it,
#: so one that outlives the run is found even after it was re-parented (a gunicorn worker, a postmaster).
SESSION_MARKER = "ROLLGUARD_TEST_SESSION"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], *, timeout: float = 20.0, what: str = "condition") -> None:
    """Poll `predicate` until it holds; fail the test with `what` after `timeout` seconds.

    This is synchronisation on an observable condition (a port answering, a flag
    served), not a fixed sleep.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code < 500
    except httpx.HTTPError:
        return False


def missing(reason: str) -> None:
    """Skip outside CI, fail in CI: a component the test needs is not there."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed")
    assert path is not None
    return path


class ServerProcess:
    """A server started as a subprocess in its own process group, logged to a file, stopped by `stop()`.

    Every instance is listed in `ServerProcess.running` until stopped, so that a
    test which fails before its own cleanup still has its servers stopped
    (tests/conftest.py stops what a test body started and left running), and in
    `ServerProcess.stopping` from `stop_soon` until reaped.
    """

    running: ClassVar[set[ServerProcess]] = set()
    stopping: ClassVar[set[ServerProcess]] = set()

    def __init__(
        self,
        argv: Sequence[str],
        *,
        ready_url: str,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        wait: bool = True,
    ) -> None:
        """Start the server; unless `wait` is false, return only once `ready_url` answers."""
        self.log_path = log_path
        self._argv = list(argv)
        self._ready_url = ready_url
        self._timeout = timeout
        self._log = open(log_path, "wb")  # closed in reap()
        full_env = {**os.environ, **(env or {})}
        self.proc = subprocess.Popen(
            list(argv),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=REPO,
            start_new_session=True,
        )
        self._started_at = time.monotonic()
        ServerProcess.running.add(self)
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Return once the ready URL answers; stop the server and fail the test if it exits or times out."""
        deadline = self._started_at + self._timeout
        while not http_ok(self._ready_url):
            if self.proc.poll() is not None:
                self.stop()
                pytest.fail(f"{self._argv[0:4]} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"{self._ready_url} not ready after {self._timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the server (SIGTERM to its process group, SIGKILL after 10 s) and wait until it is gone."""
        self.stop_soon()
        self.reap()

    def stop_soon(self) -> None:
        """Tell the server to stop and return at once; `reap_stopping` waits for it at the end of the run.

        For fixtures that own a server no test watches stopping: its graceful
        shutdown (seconds for gunicorn) then overlaps the next tests instead of
        adding to the run.
        """
        ServerProcess.running.discard(self)
        ServerProcess.stopping.add(self)
        self._signalled_at = time.monotonic()
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def reap(self) -> None:
        """Wait for a server told to stop, killing its process group 10 s after it was told."""
        ServerProcess.stopping.discard(self)
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=max(0.0, self._signalled_at + 10 - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._log.close()

    @classmethod
    def reap_stopping(cls) -> None:
        """Wait for every server told to stop with `stop_soon` (at the end of the run)."""
        for server in list(cls.stopping):
            server.reap()


def marked_processes(marker: str) -> dict[int, str]:
    """Live processes (not zombies, not this one) whose environment carries SESSION_MARKER=`marker`."""
    needle = f"{SESSION_MARKER}={marker}".encode()
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            if (entry / "stat").read_text().rpartition(")")[2].split()[0] == "Z":
                continue
            found[int(entry.name)] = (
                (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            )
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return found


def kill_processes(pids: Sequence[int]) -> None:
    """SIGKILL each process's group, and the process itself if it leads none of its own."""
    for pid in pids:
        try:
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
