"""Fixtures for the dashboard tests: a live flag service with a flag, a controller store, an AppTest."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from control.store import ControlStore
from flags.client import Flag, FlagsClient, Guardrail
from rollguard import ROLLGUARD, free_port
from tests.conftest import LiveFlagService, start_flag_service
from tests.support import REPO, start_process

APP = str(REPO / "dashboard" / "app.py")
FLAG_KEY = "exam-attempts-optimization"
FN = "get_all_exam_attempts"
GUARDRAILS = (
    Guardrail("error_rate", "<=", 0.01, window_s=60, min_samples=5, path="optimized"),
    Guardrail("p95_latency_s", "<=", 0.2, window_s=60, min_samples=5, path="optimized"),
    Guardrail("cache_hit_rate", ">=", 0.5, window_s=60, min_samples=5),
)


def create_flag(client: FlagsClient, key: str = FLAG_KEY, **fields: object) -> Flag:
    """Create the reference flag through the admin API, as an operator would."""
    defaults: dict[str, object] = {
        "rollout": 10,
        "stages": [10, 50, 100],
        "guardrails": list(GUARDRAILS),
        "payload": {"fn": FN},
        "state": "rolling_out",
        "description": "cache, single-flight and batching for get_all_exam_attempts",
    }
    return client.create_flag(key, reason="test setup", **{**defaults, **fields})


@dataclass
class Dashboard:
    """What a dashboard test needs: the flag service, its own flag key, the controller's store, the app."""

    service: LiveFlagService
    key: str
    control_database_url: str
    open: Callable[..., AppTest]

    def store(self) -> ControlStore:
        return ControlStore(self.control_database_url)


def serve_dashboard(
    service: LiveFlagService, control_database_url: str, tmp_path: Path, *, refresh_s: int
) -> Iterator[str]:
    """For a fixture to `yield from`: `rollguard dashboard` on a free port, its URL; stopped, its log clean."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_process(
        [*ROLLGUARD, "dashboard", "--host", "127.0.0.1", "--port", str(port)],
        ready_url=f"{url}/_stcore/health",
        log_path=tmp_path / "dashboard.log",
        env={
            "ROLLGUARD_FLAGS_URL": service.url,
            "ROLLGUARD_ADMIN_TOKEN": service.admin_token,
            "ROLLGUARD_DASHBOARD_OPERATOR": "browser",
            "ROLLGUARD_CONTROL_DATABASE_URL": control_database_url,
            "ROLLGUARD_METRICS": "embedded",
            "ROLLGUARD_DASHBOARD_REFRESH_S": str(refresh_s),
            "ROLLGUARD_DASHBOARD_PASSWORD": "",
            "ROLLGUARD_DASHBOARD_READ_ONLY": "",
        },
    )
    yield url
    process.stop()
    assert "Traceback" not in process.log_tail(400), process.log_tail(400)


@pytest.fixture
def control_database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'control.db'}"


@pytest.fixture(scope="module")
def shared_flag_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveFlagService]:
    """One flag service for a test module; each test works on flags of its own key."""
    service = start_flag_service(tmp_path_factory.mktemp("flags"))
    yield service
    service.process.terminate()


@pytest.fixture
def flag_key(request: pytest.FixtureRequest) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower().removeprefix("test_"))
    return name[:90].strip("-")


@pytest.fixture
def dashboard(
    shared_flag_service: LiveFlagService, flag_key: str, control_database_url: str
) -> Iterator[Dashboard]:
    flag_service = shared_flag_service

    def open_app(
        *, flags_url: str | None = None, admin_token: str | None = "configured", **secrets: object
    ) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=30)
        at.secrets["flags_url"] = flags_url or flag_service.url
        if admin_token == "configured":
            admin_token = flag_service.admin_token
        if admin_token:
            at.secrets["admin_token"] = admin_token
        at.secrets["operator"] = "tester"
        at.secrets["control_database_url"] = control_database_url
        at.secrets["refresh_s"] = 3600
        for name, value in secrets.items():
            at.secrets[name] = value
        return at

    yield Dashboard(flag_service, flag_key, control_database_url, open_app)
