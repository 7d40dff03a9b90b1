"""Portal fixtures: a seeded throwaway database, in-process apps, a portal served as a subprocess."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from optimizer import OptimizerConfig
from portal.app import create_app
from portal.db import make_engine
from portal.runtime import Portal
from portal.seed import SeedPlan, seed
from portal.settings import PortalSettings
from rollguard import ROLLGUARD, Child, free_port
from tests.support import start_process

SMALL = SeedPlan(students=60, series=12, exams_per_series=5, attempts_per_series=2)

AppFactory = Callable[..., Flask]


def seed_database(url: str, plan: SeedPlan = SMALL) -> str:
    engine = make_engine(url)
    seed(engine, plan)
    engine.dispose()
    return url


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """A seeded SQLite database of this test's own."""
    return seed_database(f"sqlite:///{tmp_path / 'portal.db'}")


@pytest.fixture
def make_app(database_url: str, tmp_path: Path) -> Iterator[AppFactory]:
    """Build portal apps on the test's database; every app is closed at teardown."""
    apps: list[Flask] = []

    def build(*, optimizer_config: OptimizerConfig | None = None, **overrides: Any) -> Flask:
        values: dict[str, Any] = {"database_url": database_url, "var_dir": tmp_path / "var", **overrides}
        app = create_app(PortalSettings(**values), optimizer_config)
        apps.append(app)
        return app

    yield build
    for app in apps:
        portal(app).close()


def portal(app: Flask) -> Portal:
    runtime: Portal = app.extensions["portal"]
    return runtime


@dataclass
class LivePortal:
    url: str
    admin_token: str
    process: Child


def start_portal(
    tmp_path: Path,
    *,
    database_url: str,
    optimize: bool,
    extra_env: dict[str, str] | None = None,
    workers: int = 1,
    server: str | None = None,
) -> LivePortal:
    """`rollguard portal serve` on a free loopback port, gated statically unless a flags URL is in `extra_env`."""
    port = free_port()
    token = "portal-admin-test"
    env = {
        "ROLLGUARD_PORTAL_DATABASE_URL": database_url,
        "ROLLGUARD_PORTAL_OPTIMIZE": "on" if optimize else "off",
        "ROLLGUARD_PORTAL_ADMIN_TOKEN": token,
        "ROLLGUARD_VAR_DIR": str(tmp_path / f"var-{port}"),
        **(extra_env or {}),
    }
    url = f"http://127.0.0.1:{port}"
    process = start_process(
        [
            *ROLLGUARD,
            "portal",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--threads",
            "16",
            "--workers",
            str(workers),
            *(["--server", server] if server else []),
        ],
        ready_url=f"{url}/healthz",
        log_path=tmp_path / f"portal-{port}.log",
        env=env,
    )
    return LivePortal(url, token, process)
