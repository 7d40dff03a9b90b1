"""Process supervision against real processes: readiness, stopping the whole group, the kill after the grace."""

from __future__ import annotations

import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from rollguard import (
    ChildFailed,
    Supervisor,
    free_port,
    http_ok,
    pick_port,
    port_open,
    start_child,
    stop_children,
)
from tests.support import wait_until

# Says it is up once SIGTERM is ignored, then sleeps; killed only by SIGKILL.
IGNORES_SIGTERM = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ignoring SIGTERM", flush=True)
time.sleep(300)
"""
# Notes when SIGTERM comes (on the machine's monotonic clock) and goes on.
NOTES_SIGTERM = """
import signal, time
signal.signal(signal.SIGTERM, lambda *_: print("SIGTERM at", time.monotonic(), flush=True))
print("noting SIGTERM", flush=True)
time.sleep(300)
"""
GRACE_S = 2.0
# Starts a grandchild that ignores SIGTERM, prints its pid, and waits (SIGTERM ends it, not the grandchild).
PARENT_OF_STUBBORN = f"""
import subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", {IGNORES_SIGTERM!r}], stdout=sys.stdout)
print("grandchild", grandchild.pid, flush=True)
time.sleep(300)
"""


def http_server(port: int) -> list[str]:
    return [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def logged(path: Path, text: str) -> bool:
    return path.exists() and text in path.read_text(errors="replace")


def test_a_server_is_ready_once_its_url_answers_and_stops_with_its_group(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with start_child(http_server(port), log_path=tmp_path / "server.log", name="http") as server:
        server.wait_ready(url=url, timeout=30)
        assert http_ok(url)
        assert server.running
        assert server.name == "http"
    assert not server.running
    # http.server exits on SIGTERM: stopped by the signal, not by the kill.
    assert server.proc.returncode == -signal.SIGTERM
    assert not http_ok(url)
    assert "GET / HTTP" in server.log_tail()


def test_readiness_by_port_and_by_a_check(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "server.log"
    with start_child(http_server(port), log_path=log) as server:
        server.wait_ready(port=port, timeout=30)
        assert port_open(port)
        server.wait_ready(check=lambda: http_ok(f"http://127.0.0.1:{port}/"), timeout=30)
    assert not port_open(port)


def test_wait_ready_takes_exactly_one_condition(tmp_path: Path) -> None:
    with start_child(python("import time; time.sleep(300)"), log_path=tmp_path / "sleep.log") as child:
        with pytest.raises(TypeError):
            child.wait_ready(timeout=1)
        with pytest.raises(TypeError):
            child.wait_ready(url="http://127.0.0.1:1/", port=1, timeout=1)


def test_a_readiness_timeout_says_what_the_log_says_and_stops_the_child(tmp_path: Path) -> None:
    code = "import time; print('migrating the database, step 3 of 7', flush=True); time.sleep(300)"
    log = tmp_path / "slow.log"
    with start_child(python(code), log_path=log, name="slow") as child:
        wait_until(lambda: logged(log, "step 3"), what="the child's first line")
        url = f"http://127.0.0.1:{free_port()}/readyz"
        with pytest.raises(ChildFailed) as failed:
            child.wait_ready(url=url, timeout=0.5)
        assert not child.running
    message = str(failed.value)
    assert "slow" in message and url in message and "not ready after 0.5s" in message
    assert "migrating the database, step 3 of 7" in message


def test_a_child_that_exits_before_it_is_ready_fails_at_once_with_its_log(tmp_path: Path) -> None:
    code = "import sys; print('address already in use', flush=True); sys.exit(3)"
    with start_child(python(code), log_path=tmp_path / "crash.log", name="crash") as child:
        with pytest.raises(ChildFailed) as failed:
            child.wait_ready(port=free_port(), timeout=60)
    assert "crash exited with 3" in str(failed.value)
    assert "address already in use" in str(failed.value)


@pytest.mark.slow
def test_a_child_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    log = tmp_path / "stubborn.log"
    with start_child(python(IGNORES_SIGTERM), log_path=log) as child:
        wait_until(lambda: logged(log, "ignoring SIGTERM"), what="SIGTERM ignored")
        started = time.monotonic()
        child.stop(grace_s=1.0)
        assert time.monotonic() - started >= 1.0
        assert child.proc.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_a_child_of_the_child_is_stopped_with_the_group(tmp_path: Path) -> None:
    log = tmp_path / "parent.log"
    with start_child(python(PARENT_OF_STUBBORN), log_path=log) as parent:
        wait_until(lambda: logged(log, "ignoring SIGTERM"), what="the grandchild to ignore SIGTERM")
        grandchild = int(log.read_text().split("grandchild ")[1].split()[0])
        assert alive(grandchild)
        # The parent dies of SIGTERM at once; the grandchild, in its group, only of the SIGKILL after.
        parent.stop(grace_s=1.0)
        assert parent.proc.returncode == -signal.SIGTERM
    wait_until(lambda: not alive(grandchild), timeout=10, what="the grandchild killed with the group")


@pytest.mark.slow
def test_stop_children_signals_every_child_before_any_grace_runs_out(tmp_path: Path) -> None:
    logs = [tmp_path / f"stubborn-{i}.log" for i in range(3)]
    children = [start_child(python(NOTES_SIGTERM), log_path=log) for log in logs]
    try:
        wait_until(lambda: all(logged(log, "noting SIGTERM") for log in logs), what="the handlers set")
        stop_children(children, grace_s=GRACE_S)
    finally:
        stop_children(children, grace_s=0)
    assert [c.proc.returncode for c in children] == [-signal.SIGKILL] * 3
    # The clock is the machine's: one after another, each SIGTERM would come a whole grace after the last.
    received = [float(log.read_text().split("SIGTERM at ")[1].split()[0]) for log in logs]
    assert max(received) - min(received) < GRACE_S


def test_terminate_returns_at_once_and_reap_finishes_the_stop(tmp_path: Path) -> None:
    port = free_port()
    with start_child(http_server(port), log_path=tmp_path / "server.log") as server:
        server.wait_ready(port=port, timeout=30)
        server.terminate()
        assert server.stopping
        wait_until(lambda: not port_open(port), what="the server to go on SIGTERM")
        server.reap()
        assert server.proc.returncode == -signal.SIGTERM


def test_supervisor_runs_one_offs_and_stops_every_child(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    with Supervisor(log_dir=tmp_path / "logs", env={"GREETING": "hello"}) as supervisor:
        supervisor.run("greet", python("import os; print(os.environ['GREETING'])"), timeout=30)
        assert "hello" in (tmp_path / "logs" / "greet.log").read_text()
        with pytest.raises(ChildFailed, match="fails exited with 2:\nno such table"):
            supervisor.run("fails", python("import sys; print('no such table'); sys.exit(2)"), timeout=30)
        servers = [supervisor.start(f"http{i}", http_server(port)) for i, port in enumerate(ports)]
        for server, port in zip(servers, ports, strict=True):
            server.wait_ready(port=port, timeout=30)
        supervisor.check_alive(("http0", "http1"))
        assert supervisor.pids() == {
            "greet": supervisor.children[0].pid,
            "fails": supervisor.children[1].pid,
            "http0": servers[0].pid,
            "http1": servers[1].pid,
        }
    assert not any(port_open(port) for port in ports)
    assert not any(server.running for server in servers)


def test_pick_port_takes_the_preferred_port_only_when_it_is_free() -> None:
    free = free_port()
    assert pick_port(free) == free
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        other = pick_port(busy)
        assert other != busy
    assert pick_port(None) > 0
