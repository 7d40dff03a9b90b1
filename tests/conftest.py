"""Fixtures shared by every part's tests: real components, found or reported missing."""

from __future__ import annotations

import os
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from UnleashClient import UnleashClient
from UnleashClient.cache import FileCache
from UnleashClient.utils import InstanceAllowType

from flags.client import FlagsClient
from rollguard import ROLLGUARD, Child, free_port, stop_children
from tests.support import SESSION_MARKER, STARTED, kill_processes, marked_processes, missing, start_process

pytest_plugins = ["pytester"]

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
_LEAK_GRACE_S = 15.0


def pytest_configure(config: pytest.Config) -> None:
    # Inherited by every process the tests start: see pytest_sessionfinish. An xdist worker
    # marks its own, so that it finds only what its tests left (and not the other workers').
    if hasattr(config, "workerinput"):
        os.environ[SESSION_MARKER] = uuid.uuid4().hex
    else:
        os.environ.setdefault(SESSION_MARKER, uuid.uuid4().hex)


def _is_xdist_controller(config: pytest.Config) -> bool:
    """The process that runs no tests itself and hands them to xdist workers."""
    return not hasattr(config, "workerinput") and bool(getattr(config.option, "numprocesses", None))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Stop the processes a test body started and left running (it failed before its own cleanup)."""
    before = len(STARTED)
    yield
    stop_children(child for child in STARTED[before:] if not child.stopping)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a process a test started outlives it (after a grace for ones still stopping)."""
    if _is_xdist_controller(session.config):
        return  # each worker checks its own tests' processes; the workers carry this one's marker
    for child in STARTED:
        if child.stopping:
            child.reap()
    marker = os.environ[SESSION_MARKER]
    deadline = time.monotonic() + _LEAK_GRACE_S
    while (leaked := marked_processes(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    if not leaked:
        return
    kill_processes(list(leaked))
    lines = "\n".join(f"  {pid}: {cmdline[:200]}" for pid, cmdline in sorted(leaked.items()))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = f"{len(leaked)} processes started by the tests outlived them (now killed):\n{lines}"
    if reporter is not None:
        reporter.write_sep("=", "processes left behind", red=True)
        reporter.write_line(message, red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _postgres_reachable(url: str) -> bool:
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url)
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("select 1"))
        engine.dispose()
        return True
    except sqlalchemy.exc.OperationalError:
        return False


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get("ROLLGUARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    if not _postgres_reachable(url):
        missing(f"PostgreSQL not reachable at {url}")
    return url


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL database of its own for one test, dropped afterwards."""
    import sqlalchemy

    name = f"rg_{secrets.token_hex(6)}"
    admin = sqlalchemy.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    base, _, _db = postgres_url.rpartition("/")
    yield f"{base}/{name}"
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    url = os.environ.get("ROLLGUARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        missing(f"Redis not reachable at {url}")
    return url


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@dataclass
class LiveFlagService:
    """A flag service running as `rollguard flags serve` on a free loopback port."""

    url: str
    admin_token: str
    client_token: str
    database_url: str
    process: Child

    def wait_ready(self) -> None:
        self.process.wait_ready(url=f"{self.url}/readyz", timeout=30)

    def admin(self, actor: str | None = None) -> FlagsClient:
        return FlagsClient(self.url, self.admin_token, actor=actor)

    def sdk(self, app_name: str, cache_dir: Path, **options: Any) -> UnleashClient:
        """The official Unleash SDK pointed at this service, refreshing every second; not yet started."""
        return UnleashClient(
            url=f"{self.url}/api",
            app_name=app_name,
            custom_headers={"Authorization": self.client_token},
            disable_metrics=True,
            refresh_interval=1,
            cache=FileCache(app_name, directory=str(cache_dir)),
            multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW,
            **options,
        )


def start_flag_service(
    tmp_path: Path,
    *,
    database_url: str | None = None,
    extra_env: dict[str, str] | None = None,
    wait: bool = True,
) -> LiveFlagService:
    """`rollguard flags serve` on a free port with fresh tokens; ready on return unless `wait` is false."""
    port = free_port()
    database_url = database_url or f"sqlite:///{tmp_path / 'flags.db'}"
    admin_token = "admin-" + secrets.token_hex(12)
    client_token = "client-" + secrets.token_hex(12)
    env = {
        "ROLLGUARD_ADMIN_TOKEN": admin_token,
        "ROLLGUARD_CLIENT_TOKEN": client_token,
        "ROLLGUARD_DATABASE_URL": database_url,
        **(extra_env or {}),
    }
    url = f"http://127.0.0.1:{port}"
    process = start_process(
        [*ROLLGUARD, "flags", "serve", "--host", "127.0.0.1", "--port", str(port)],
        log_path=tmp_path / f"flags-{port}.log",
        env=env,
    )
    service = LiveFlagService(url, admin_token, client_token, database_url, process)
    if wait:
        service.wait_ready()
    return service


class FlagServices:
    """Fresh flag services for the tests that ask for one, each started while earlier tests run.

    A service takes seconds to start (migrations, gunicorn, its workers) and to
    stop gracefully. A test that needs one gets its own (nothing is shared
    between tests): started ahead, as soon as the test before it that needed one
    took its own, and stopped without waiting (reaped at the end of the run).
    """

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp_path_factory = tmp_path_factory
        self._spare: LiveFlagService | None = None

    def take(self, *, start_next: bool) -> LiveFlagService:
        service, self._spare = self._spare, None
        if service is None:
            service = self._start(wait=True)
        else:
            service.wait_ready()
        if start_next:
            self._spare = self._start(wait=False)
        return service

    def close(self) -> None:
        if self._spare is not None:
            self._spare.process.terminate()
            self._spare = None

    def _start(self, *, wait: bool) -> LiveFlagService:
        return start_flag_service(self._tmp_path_factory.mktemp("flags"), wait=wait)


@pytest.fixture(scope="session")
def flag_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlagServices]:
    services = FlagServices(tmp_path_factory)
    yield services
    services.close()


def _a_later_test_uses(request: pytest.FixtureRequest, fixture: str) -> bool:
    items = request.session.items
    try:
        index = items.index(request.node)
    except ValueError:
        return False
    return any(fixture in getattr(item, "fixturenames", ()) for item in items[index + 1 :])


@pytest.fixture
def flag_service(request: pytest.FixtureRequest, flag_services: FlagServices) -> Iterator[LiveFlagService]:
    """A flag service of this test's own (fresh database, tokens and port)."""
    service = flag_services.take(start_next=_a_later_test_uses(request, "flag_service"))
    yield service
    service.process.terminate()
