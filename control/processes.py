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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

logger = logging.getLogger(__name__)

ROLLGUARD = (sys.executable, "-m", "control")


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
    """Owns the demo's children: starts them, waits for them, stops them all."""

    def __init__(self, *, log_dir: Path, env: Mapping[str, str], cwd: Path) -> None:
        self.log_dir = log_dir
        self.env = dict(env)
        self.cwd = cwd
        self.children: list[Child] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> Child:
        log_path = self.log_dir / f"{name}.log"
        child = Child(name, list(argv), log_path)
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
        logger.debug("started %s (pid %s): %s", name, child.proc.pid, " ".join(argv))
        return child

    def run(self, name: str, argv: Sequence[str], *, timeout: float) -> None:
        """Run a one-off command to completion; raise ChildFailed on a non-zero exit."""
        child = self.start(name, argv)
        assert child.proc is not None
        try:
            code = child.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            self._stop(child)
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

    def stop_all(self) -> None:
        """Stop every child, newest first: SIGTERM, then SIGKILL after a grace period."""
        for child in reversed(self.children):
            self._stop(child)

    @staticmethod
    def _stop(child: Child, grace_s: float = 10.0) -> None:
        if child.proc is None or child.proc.poll() is not None:
            return
        try:
            os.killpg(child.proc.pid, signal.SIGTERM)
            child.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            logger.warning("%s ignored SIGTERM; killing it", child.name)
            os.killpg(child.proc.pid, signal.SIGKILL)
            child.proc.wait(timeout=5)
        except ProcessLookupError:
            pass
