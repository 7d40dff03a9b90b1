"""The official Node SDK (`unleash-client` 6) in streaming mode against `rollguard flags serve`.

Needs Node.js and npm; `unleash-client` is installed once per session into a
temporary folder (or taken from ROLLGUARD_TEST_NODE_MODULES).
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LiveFlagService
from tests.support import REPO, missing

WATCH_JS = REPO / "bench" / "flags_streaming_watch.js"
FLAG = "node-streamed"


@pytest.fixture(scope="session")
def node_modules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("ROLLGUARD_TEST_NODE_MODULES")
    if given:
        return Path(given)
    if shutil.which("node") is None or shutil.which("npm") is None:
        missing("Node.js and npm are needed for the Node SDK test")
    folder = tmp_path_factory.mktemp("node")
    installed = subprocess.run(
        [
            "npm",
            "install",
            "--silent",
            "--no-audit",
            "--no-fund",
            "--prefix",
            str(folder),
            "unleash-client@6",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if installed.returncode != 0:
        missing(f"npm could not install unleash-client: {installed.stderr[-500:]}")
    return folder / "node_modules"


class Watcher:
    """The watch script: one line per change of the flag for one user."""

    def __init__(self, node_modules: Path, url: str, token: str) -> None:
        self.proc = subprocess.Popen(
            ["node", str(WATCH_JS), f"{url}/api", token, FLAG],
            env={**os.environ, "NODE_PATH": str(node_modules)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.states: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.states.put(line.split()[0])

    def expect(self, state: str, *, timeout: float = 20.0) -> None:
        """Wait for the SDK to report `state`, failing on a different one or after `timeout`."""
        seen = self.states.get(timeout=timeout)
        while seen == "ready":
            seen = self.states.get(timeout=timeout)
        assert seen == state

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def watcher(flag_service: LiveFlagService, node_modules: Path) -> Iterator[Watcher]:
    watcher = Watcher(node_modules, flag_service.url, flag_service.client_token)
    yield watcher
    watcher.stop()


def test_node_sdk_in_streaming_mode_sees_kill_and_resume(
    flag_service: LiveFlagService, watcher: Watcher
) -> None:
    # The SDK starts with the flag unknown (off), then streams each change.
    watcher.expect("off")
    with flag_service.admin("test") as admin:
        admin.create_flag(FLAG, enabled=True, rollout=100)
        watcher.expect("on")
        admin.kill(FLAG, reason="guardrail breached")
        watcher.expect("off")
        admin.resume(FLAG, reason="fixed")
        watcher.expect("on")
