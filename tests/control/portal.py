"""The real portal and traffic generator for the controller's end-to-end tests (subprocesses)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import LiveFlagService
from tests.support import REPO, ROLLGUARD, ServerProcess, free_port


@dataclass
class LivePortal:
    url: str
    admin_token: str
    env: dict[str, str]
    process: ServerProcess

    @property
    def metrics_url(self) -> str:
        return f"{self.url}/metrics"

    def inject_fault(self, *, error_rate: float, latency_ms: float = 0.0) -> None:
        response = httpx.post(
            f"{self.url}/api/admin/fault",
            json={"error_rate": error_rate, "latency_ms": latency_ms},
            headers={"Authorization": self.admin_token},
            timeout=5,
        )
        response.raise_for_status()

    def stop(self) -> None:
        self.process.stop()


def start_portal(tmp_path: Path, flags: LiveFlagService, *, students: int = 200) -> LivePortal:
    """Seed a portal database and serve it on a free port, gated by `flags` (refreshed every second)."""
    port = free_port()
    token = "portal-" + secrets.token_hex(8)
    env = {
        "ROLLGUARD_FLAGS_URL": flags.url,
        "ROLLGUARD_CLIENT_TOKEN": flags.client_token,
        "ROLLGUARD_PORTAL_DATABASE_URL": f"sqlite:///{tmp_path / 'portal.db'}",
        "ROLLGUARD_PORTAL_ADMIN_TOKEN": token,
        "ROLLGUARD_PORTAL_FLAGS_REFRESH_S": "1",
        "ROLLGUARD_VAR_DIR": str(tmp_path / "portal-var"),
    }
    subprocess.run(
        [*ROLLGUARD, "portal", "seed", "--students", str(students)],
        env={**os.environ, **env},
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=120,
    )
    url = f"http://127.0.0.1:{port}"
    process = ServerProcess(
        [*ROLLGUARD, "portal", "serve", "--host", "127.0.0.1", "--port", str(port)],
        ready_url=f"{url}/healthz",
        log_path=tmp_path / "portal.log",
        env=env,
    )
    return LivePortal(url, token, env, process)


class Traffic:
    """`rollguard traffic run --scenario steady` (or another scenario) against a portal, in the background."""

    def __init__(
        self,
        portal: LivePortal,
        log_path: Path,
        *,
        users: int = 20,
        duration_s: int = 120,
        scenario: str = "steady",
    ) -> None:
        self._log = open(log_path, "wb")  # closed in stop()
        self.proc = subprocess.Popen(
            [
                *ROLLGUARD,
                "traffic",
                "run",
                "--scenario",
                scenario,
                "--users",
                str(users),
                "--duration",
                str(duration_s),
                "--target",
                portal.url,
                "--spawn-rate",
                str(users),
                "--settle",
                "5",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **portal.env},
            cwd=REPO,
            start_new_session=True,
        )

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._log.close()
