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
    (tests/conftest.py stops what a test body started and left running).
    """

    running: ClassVar[set[ServerProcess]] = set()

    def __init__(
        self,
        argv: Sequence[str],
        *,
        ready_url: str,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # closed in stop()
        full_env = {**os.environ, **(env or {})}
        self.proc = subprocess.Popen(
            list(argv),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=REPO,
            start_new_session=True,
        )
        ServerProcess.running.add(self)
        deadline = time.monotonic() + timeout
        while not http_ok(ready_url):
            if self.proc.poll() is not None:
                self.stop()
                pytest.fail(f"{argv[0:4]} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"{ready_url} not ready after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        ServerProcess.running.discard(self)
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 15)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(timeout=5)
        self._log.close()


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
