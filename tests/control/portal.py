"""The real portal and traffic generator for the controller's end-to-end tests (subprocesses)."""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx

from rollguard import ROLLGUARD, Child, free_port
from tests.conftest import LiveFlagService
from tests.support import REPO, start_process


@dataclass
class LivePortal:
    url: str
    admin_token: str
    env: dict[str, str]
    process: Child

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
    process = start_process(
        [*ROLLGUARD, "portal", "serve", "--host", "127.0.0.1", "--port", str(port)],
        ready_url=f"{url}/healthz",
        log_path=tmp_path / "portal.log",
        env=env,
    )
    return LivePortal(url, token, env, process)


def start_traffic(
    portal: LivePortal,
    log_path: Path,
    *,
    users: int = 20,
    duration_s: int = 120,
    scenario: str = "steady",
) -> Child:
    """`rollguard traffic run --scenario steady` (or another scenario) against a portal, in the background."""
    argv = [*ROLLGUARD, "traffic", "run", "--scenario", scenario, "--target", portal.url]
    argv += [
        "--users",
        str(users),
        "--spawn-rate",
        str(users),
        "--duration",
        str(duration_s),
        "--settle",
        "5",
    ]
    return start_process(argv, log_path=log_path, env=portal.env)
