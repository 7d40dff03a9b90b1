"""Helpers the tests share: the processes the tests start, waiting on conditions, missing components."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from rollguard import Child, start_child

REPO = Path(__file__).resolve().parent.parent
#: Set in the environment of the test run (tests/conftest.py); every process a test starts inherits it,
#: so one that outlives the run is found even after it was re-parented (a gunicorn worker, a postmaster).
SESSION_MARKER = "ROLLGUARD_TEST_SESSION"
#: Every process the tests started through `start_process`, in order: tests/conftest.py stops the
#: ones a test body left running and reaps, at the end of the run, the ones told to stop.
STARTED: list[Child] = []


def start_process(
    argv: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path = REPO,
    ready_url: str | None = None,
    timeout: float = 30.0,
) -> Child:
    """Start `argv` in a process group of its own, logged to `log_path`; with `ready_url`, once it answers.

    A server that exits or is not ready in time is stopped, and `ChildFailed`
    says why with the end of its log.
    """
    child = start_child(argv, log_path=log_path, env=env, cwd=cwd)
    STARTED.append(child)
    if ready_url is not None:
        child.wait_ready(url=ready_url, timeout=timeout)
    return child


def python_output(code: str, env: Mapping[str, str] | None = None) -> str:
    """What `code` prints, run by this interpreter in a process of its own (in the repository,
    `env` over this environment): for what must not touch the test process (gevent's patching,
    `gc.freeze`, the modules an import loads). Raises if it fails."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        check=True,
    )
    return done.stdout


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
