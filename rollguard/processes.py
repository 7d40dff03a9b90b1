"""Start, watch and stop the child processes of `rollguard up`.

Each child runs in its own process group with its output in a log file, so that
stopping the demo stops everything a child started too (gunicorn workers,
Streamlit), and a crash is visible in `./var/logs/<name>.log`.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

logger = logging.getLogger(__name__)

ROLLGUARD = (sys.executable, "-m", "rollguard")


class ChildFailed(RuntimeError):
    """A child process exited or never became ready."""


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def pick_port(preferred: int | None, host: str = "127.0.0.1") -> int:
    """The preferred port when it is free, else any free port."""
    if preferred and port_is_free(preferred, host):
        return preferred
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Supervisor:
    """Owns the demo's children: starts them, waits for them, stops them all.

    `on_start` is called with each child once it runs, e.g. to record its pid
    (which is also its process group) where a watcher can see it.
    """

    def __init__(
        self,
        *,
        log_dir: Path,
        env: Mapping[str, str],
        cwd: Path,
        on_start: Callable[[Child], None] | None = None,
    ) -> None:
        self.log_dir = log_dir
        self.env = dict(env)
        self.cwd = cwd
        self.children: list[Child] = []
        self.on_start = on_start
        self._starting = False
        self._held: BaseException | None = None
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> Child:
        log_path = self.log_dir / f"{name}.log"
        child = Child(name, list(argv), log_path)
        # A signal handler may raise at any point (see `raise_or_hold`): hold it back
        # until the new child is on the list, or it would run on with nobody to stop it.
        self._starting = True
        try:
            with open(log_path, "ab") as log:
                child.proc = subprocess.Popen(
                    list(argv),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env={**self.env, **(env or {})},
                    cwd=self.cwd,
                    start_new_session=True,
                )
            self.children.append(child)
        finally:
            self._starting = False
        logger.debug("started %s (pid %s): %s", name, child.proc.pid, " ".join(argv))
        if self.on_start is not None:
            self.on_start(child)
        held, self._held = self._held, None
        if held is not None:
            raise held
        return child

    def raise_or_hold(self, exc: BaseException) -> None:
        """For a signal handler: raise `exc` now, or right after the child being started is on the list."""
        if self._starting:
            self._held = exc
            return
        raise exc

    def pids(self) -> dict[str, int]:
        """Every child started so far by name (the last of a name): its pid, which is also its process group."""
        return {c.name: c.proc.pid for c in self.children if c.proc is not None}

    def run(self, name: str, argv: Sequence[str], *, timeout: float) -> None:
        """Run a one-off command to completion; raise ChildFailed on a non-zero exit."""
        child = self.start(name, argv)
        assert child.proc is not None
        try:
            code = child.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            self._stop([child])
            raise ChildFailed(f"{name} did not finish in {timeout:.0f}s") from exc
        if code != 0:
            raise ChildFailed(f"{name} exited with {code}:\n{child.log_tail()}")

    def wait_ready(self, child: Child, url: str, *, timeout: float = 60.0) -> None:
        """Wait until `url` answers below 500, or fail with the child's log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not child.running:
                raise ChildFailed(f"{child.name} exited:\n{child.log_tail()}")
            try:
                if httpx.get(url, timeout=1.0).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise ChildFailed(f"{child.name} not ready at {url} after {timeout:.0f}s:\n{child.log_tail()}")

    def check_alive(self, names: Sequence[str]) -> None:
        for child in self.children:
            if child.name in names and not child.running:
                raise ChildFailed(f"{child.name} stopped unexpectedly:\n{child.log_tail()}")

    def stop_all(self, *, grace_s: float = 10.0) -> None:
        """Stop every child: SIGTERM to each process group, then SIGKILL what outlives the grace period."""
        self._stop(self.children, grace_s=grace_s)

    @staticmethod
    def _stop(children: Sequence[Child], grace_s: float = 10.0) -> None:
        # Every group gets SIGTERM at once, so one slow child costs the grace period once.
        running = [c for c in children if c.proc is not None and c.proc.poll() is None]
        for child in running:
            _signal_group(child, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for child in running:
            assert child.proc is not None
            try:
                child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("%s ignored SIGTERM; killing it", child.name)
        for child in running:
            # Also when the leader has exited: a worker it left behind is still in its group
            # (and keeps the group id from being reused).
            _signal_group(child, signal.SIGKILL)
            if child.proc is not None and child.proc.poll() is None:
                child.proc.wait(timeout=5)


def _signal_group(child: Child, sig: signal.Signals) -> None:
    if child.proc is None:
        return
    try:
        os.killpg(child.proc.pid, sig)
    except ProcessLookupError:
        pass
