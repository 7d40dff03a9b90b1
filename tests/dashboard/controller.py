"""`rollguard control run` for the dashboard's browser tests: the real controller, judging a live target."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.dashboard.metrics import MetricsTarget
from tests.support import REPO, ROLLGUARD


class RunningController:
    """A `rollguard control run` process in its own process group, logged to a file."""

    def __init__(self, log_path: Path, env: Mapping[str, str], *args: str) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # closed in stop()
        self.process = subprocess.Popen(
            [*ROLLGUARD, "control", "run", *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            cwd=REPO,
            start_new_session=True,
        )

    def stop(self) -> int:
        """Stop it as a supervisor does (SIGTERM: it gives its lease up), SIGKILL after 20 s; its exit code."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def busy(target: MetricsTarget) -> Iterator[MetricsTarget]:
    """Healthy traffic on `target` every 0.2 s until the block ends."""
    stop = threading.Event()

    def serve() -> None:
        while not stop.wait(0.2):
            target.traffic(calls=10, error_fraction=0.0, latency_s=0.03)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield target
    finally:
        stop.set()
        thread.join(timeout=5)
