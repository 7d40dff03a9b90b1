"""`rollguard control run` for the dashboard's browser tests: the real controller, judging a live target."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

from rollguard import ROLLGUARD
from tests.dashboard.metrics import MetricsTarget
from tests.support import start_process


class RunningController:
    """A `rollguard control run` process in its own process group, logged to a file."""

    def __init__(self, log_path: Path, env: Mapping[str, str], *args: str) -> None:
        self.log_path = log_path
        self.child = start_process([*ROLLGUARD, "control", "run", *args], log_path=log_path, env=env)

    def stop(self) -> int:
        """Stop it as a supervisor does (SIGTERM: it gives its lease up), SIGKILL after 20 s; its exit code."""
        self.child.stop(grace_s=20)
        code = self.child.proc.returncode
        assert code is not None
        return code

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
