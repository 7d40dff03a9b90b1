"""The run's process-leak check finds what a test left behind, even a process re-parented away from it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpcore  # noqa: F401  (see below)
import pytest

from tests.support import SESSION_MARKER, kill_processes, marked_processes, wait_until


def test_an_orphaned_grandchild_is_found_by_its_environment() -> None:
    marker = os.environ[SESSION_MARKER]
    # The shell exits at once; its `sleep` is re-parented (to init) like a worker whose master died.
    shell = subprocess.Popen(
        ["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"], stdout=subprocess.PIPE, start_new_session=True
    )
    orphan = int(shell.communicate(timeout=10)[0])
    try:
        assert orphan in marked_processes(marker)
        assert marked_processes("another-run").keys().isdisjoint({orphan})
    finally:
        kill_processes([orphan])
    wait_until(lambda: orphan not in marked_processes(marker), what="the orphan killed")


# httpcore is imported above, before the in-process run below: pytester drops the modules first
# imported during that run, and a second copy of httpcore would break httpx's error mapping (a
# refused connection raising httpcore's error, not httpx's) for every test after this one.
def test_a_server_left_running_by_a_failed_test_body_is_stopped(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("from tests.conftest import pytest_runtest_call  # noqa: F401\n")
    pytester.makepyfile(
        test_leaves_server="""
        import sys
        from rollguard import free_port
        from tests.support import start_process

        def test_fails_before_cleanup(tmp_path):
            port = free_port()
            server = start_process(
                [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                ready_url=f"http://127.0.0.1:{port}/",
                log_path=tmp_path / "server.log",
            )
            (tmp_path / "pid").write_text(str(server.pid))
            raise AssertionError("failed before stopping its server")
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", f"--basetemp={pytester.path / 'base'}")
    result.assert_outcomes(failed=1)
    (pid_file,) = {path.resolve() for path in (pytester.path / "base").glob("*/pid")}
    pid = int(pid_file.read_text())
    assert pid not in marked_processes(os.environ[SESSION_MARKER])


def test_a_run_whose_test_leaves_a_process_behind_fails(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The inner run marks its processes apart, so its check finds only what its own test left.
    monkeypatch.setenv(SESSION_MARKER, f"inner-{os.getpid()}-{id(pytester)}")
    pytester.makeconftest("from tests.conftest import pytest_configure, pytest_sessionfinish  # noqa: F401\n")
    pytester.makepyfile(
        test_leaves_orphan="""
        import subprocess

        def test_passes_but_leaves_a_process(tmp_path):
            shell = subprocess.Popen(
                ["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"], stdout=subprocess.PIPE, start_new_session=True
            )
            (tmp_path / "pid").write_text(shell.communicate(timeout=10)[0].decode().strip())
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", f"--basetemp={pytester.path / 'base'}")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*processes left behind*", "*sleep 300*"])
    (pid_file,) = {path.resolve() for path in (pytester.path / "base").glob("*/pid")}
    orphan = int(pid_file.read_text())
    # The run's check sent SIGKILL; the orphan is gone once the kernel has delivered it.
    wait_until(lambda: not Path(f"/proc/{orphan}").exists() or _zombie(orphan), what="the orphan killed")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True
