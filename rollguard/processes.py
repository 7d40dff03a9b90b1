"""Start, wait for and stop child processes: for `rollguard up`, the tests and the benchmarks.

Each child runs in a process group (a session) of its own with its output in a
log file, so that stopping it stops everything it started too (gunicorn
workers, Streamlit), and a failure to start says why with the end of its log.
Stopping is SIGTERM to the group, then SIGKILL to whatever is left after a
grace period; `stop_children` gives every child the signal at once, so one slow
child costs the grace period once. `Supervisor` owns the children of one run
(`rollguard up`, a benchmark) by name.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx

logger = logging.getLogger(__name__)

#: The argv prefix of a `rollguard` command run by the current interpreter.
ROLLGUARD = (sys.executable, "-m", "rollguard")
#: Seconds from SIGTERM to SIGKILL unless a caller says otherwise.
GRACE_S = 10.0
_POLL_S = 0.05


class ChildFailed(RuntimeError):
    """A child process exited, never became ready, or a one-off command failed."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def pick_port(preferred: int | None, host: str = "127.0.0.1") -> int:
    """The preferred port when it is free, else any free port."""
    if preferred and _port_is_free(preferred, host):
        return preferred
    return free_port(host)


def _port_is_free(port: int, host: str) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def http_ok(url: str) -> bool:
    """Whether `url` answers below 500 within a second."""
    try:
        return httpx.get(url, timeout=1.0).status_code < 500
    except httpx.HTTPError:
        return False


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on `host:port`."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


class Child:
    """A process started by `start_child`, leader of its own process group."""

    def __init__(
        self, *, name: str, argv: Sequence[str], log_path: Path, proc: subprocess.Popen[bytes]
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.proc = proc
        self._kill_at: float | None = None
        self._reaped = False

    def __repr__(self) -> str:
        return f"Child({self.name!r}, pid={self.pid})"

    def __enter__(self) -> Child:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        """The leader's pid, which is also the process group's id."""
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    @property
    def stopping(self) -> bool:
        """Whether it was told to stop (`terminate`, `stop` or `kill`)."""
        return self._kill_at is not None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def signal(self, sig: int) -> None:
        """Send `sig` to the whole process group (nothing if it is gone); for a leader not yet reaped."""
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def wait_ready(
        self,
        *,
        url: str | None = None,
        port: int | None = None,
        check: Callable[[], bool] | None = None,
        timeout: float = 60.0,
    ) -> None:
        """Return once `url` answers below 500, `port` accepts connections or `check()` holds.

        :raise ChildFailed: the child exited first or `timeout` passed; the
            child is stopped and the message ends with its log.
        """
        ready, what = _readiness(url=url, port=port, check=check)
        deadline = time.monotonic() + timeout
        while not ready():
            if not self.running:
                self._fail(f"{self.name} exited with {self.proc.returncode} before {what} was ready")
            if time.monotonic() > deadline:
                self._fail(f"{self.name}: {what} not ready after {timeout:g}s")
            time.sleep(_POLL_S)

    def _fail(self, message: str) -> None:
        tail = self.log_tail()  # before stopping, whose lines would push the cause out of the tail
        self.stop()
        raise ChildFailed(f"{message}; the end of {self.log_path}:\n{tail}")

    def terminate(self, grace_s: float = GRACE_S) -> None:
        """SIGTERM the group and return at once; `reap` kills what is left `grace_s` later."""
        if self._kill_at is not None:
            return
        self._kill_at = time.monotonic() + grace_s
        if self.proc.returncode is None:
            self.signal(signal.SIGTERM)

    def reap(self) -> None:
        """Wait for a child told to stop until its grace is over, then SIGKILL its group."""
        if self._reaped:
            return
        self.terminate()
        assert self._kill_at is not None
        ours = self.proc.returncode is None
        try:
            self.proc.wait(timeout=max(0.0, self._kill_at - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.warning("%s ignored SIGTERM; killing it", self.name)
        self._kill_group(ours)

    def stop(self, grace_s: float = GRACE_S) -> None:
        """SIGTERM the group, SIGKILL it after `grace_s`, and wait until the leader is gone."""
        self.terminate(grace_s)
        self.reap()

    def kill(self) -> None:
        """SIGKILL the group at once and wait until the leader is gone."""
        if self._kill_at is None:
            self._kill_at = time.monotonic()
        self._kill_group(self.proc.returncode is None)

    def _kill_group(self, ours: bool) -> None:
        # Also when the leader has just exited: a worker it left behind is still in its group.
        # Not when it was reaped before this stop began: its pid, the group's id, is free for
        # reuse (pid_max may be as low as 32768) and could be another process's by now.
        if ours:
            self.signal(signal.SIGKILL)
        self.proc.wait(timeout=5)
        self._reaped = True


def _readiness(
    *, url: str | None, port: int | None, check: Callable[[], bool] | None
) -> tuple[Callable[[], bool], str]:
    if (url, port, check).count(None) != 2:
        raise TypeError("wait_ready takes exactly one of url, port and check")
    if url is not None:
        return (lambda: http_ok(url)), url
    if port is not None:
        return (lambda: port_open(port)), f"port {port}"
    assert check is not None
    return check, getattr(check, "__qualname__", "the readiness check")


def start_child(
    argv: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    name: str | None = None,
) -> Child:
    """Start `argv` in a new process group, its output appended to `log_path`.

    `env` is set on top of this process's environment.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    child = Child(name=name or Path(argv[0]).name, argv=argv, log_path=log_path, proc=proc)
    logger.debug("started %s (pid %s): %s", child.name, proc.pid, " ".join(child.argv))
    return child


def stop_children(children: Iterable[Child], *, grace_s: float = GRACE_S) -> None:
    """Stop every child: all get SIGTERM at once, then each is reaped within the same grace."""
    children = list(children)
    for child in children:
        child.terminate(grace_s)
    for child in children:
        child.reap()


class Supervisor:
    """Owns the children of one run by name: starts them, checks them, stops them all.

    Logs go to `<log_dir>/<name>.log`. `on_start` is called with each child once
    it runs, e.g. to record its pid (also its process group) where a watcher
    can see it.
    """

    def __init__(
        self,
        *,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        on_start: Callable[[Child], None] | None = None,
    ) -> None:
        self.log_dir = log_dir
        self.env = dict(env or {})
        self.cwd = cwd
        self.children: list[Child] = []
        self.on_start = on_start
        self._starting = False
        self._held: BaseException | None = None

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()

    def start(self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> Child:
        # A signal handler may raise at any point (see `raise_or_hold`): hold it back
        # until the new child is on the list, or it would run on with nobody to stop it.
        self._starting = True
        try:
            child = start_child(
                argv,
                log_path=self.log_dir / f"{name}.log",
                env={**self.env, **(env or {})},
                cwd=self.cwd,
                name=name,
            )
            self.children.append(child)
        finally:
            self._starting = False
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
        return {child.name: child.pid for child in self.children}

    def run(self, name: str, argv: Sequence[str], *, timeout: float) -> None:
        """Run a one-off command to completion; raise ChildFailed on a non-zero exit."""
        child = self.start(name, argv)
        try:
            code = child.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            child.stop()
            raise ChildFailed(f"{name} did not finish in {timeout:g}s") from exc
        if code != 0:
            raise ChildFailed(f"{name} exited with {code}:\n{child.log_tail(20)}")

    def check_alive(self, names: Sequence[str]) -> None:
        for child in self.children:
            if child.name in names and not child.running:
                raise ChildFailed(f"{child.name} stopped unexpectedly:\n{child.log_tail(20)}")

    def stop_all(self, *, grace_s: float = GRACE_S) -> None:
        """Stop every child: SIGTERM to each process group, then SIGKILL what outlives the grace period."""
        stop_children(self.children, grace_s=grace_s)
