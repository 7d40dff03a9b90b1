"""`rollguard portal ...`: serve the reference exam portal, seed its database.

The settings are read here, once, from the environment; command-line options
override them.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any

import click
import pydantic

from portal.server import DEFAULT_SERVER, SERVERS
from portal.settings import PortalSettings

logger = logging.getLogger(__name__)


@click.group("portal")
def command() -> None:
    """The reference exam portal."""


def _settings(**overrides: str | None) -> PortalSettings:
    """Settings from the environment, with the command-line options that were given on top.

    :raise click.ClickException: a setting is invalid, one line per problem, each naming its variable.
    """
    given = {name: value for name, value in overrides.items() if value is not None}
    try:
        return PortalSettings.model_validate(given)
    except pydantic.ValidationError as exc:
        raise click.ClickException("\n".join(_problem(error) for error in exc.errors())) from exc


def _problem(error: Mapping[str, Any]) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if not error["loc"]:
        return message
    name = str(error["loc"][0]).upper()
    variable = name if name.startswith("ROLLGUARD_") else PortalSettings.model_config["env_prefix"] + name
    return f"{variable}={error['input']!r}: {message}"


# Where each command-line option goes in the environment the server's workers read.
_SERVE_ENV = {
    "flags_url": "ROLLGUARD_FLAGS_URL",
    "redis_url": "ROLLGUARD_REDIS_URL",
    "database_url": "ROLLGUARD_PORTAL_DATABASE_URL",
}


@command.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--flags-url", default=None, help="Flag service URL [env ROLLGUARD_FLAGS_URL].")
@click.option("--redis-url", default=None, help="Redis for a shared cache [env ROLLGUARD_REDIS_URL].")
@click.option("--database-url", default=None, help="[env ROLLGUARD_PORTAL_DATABASE_URL]")
@click.option(
    "--server",
    type=click.Choice(SERVERS),
    default=lambda: os.environ.get("ROLLGUARD_PORTAL_SERVER", DEFAULT_SERVER),
    show_default=f"$ROLLGUARD_PORTAL_SERVER or {DEFAULT_SERVER}",
    help="The WSGI server.",
)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--threads", type=click.IntRange(min=1), default=64, show_default=True, help="Threads per worker."
)
@click.option("--dev", is_flag=True, help="Flask's development server instead of gunicorn or granian.")
def serve(
    host: str,
    port: int,
    flags_url: str | None,
    redis_url: str | None,
    database_url: str | None,
    server: str,
    workers: int,
    threads: int,
    dev: bool,
) -> None:
    """Serve the portal (granian or gunicorn gthread workers)."""
    from portal.app import create_app
    from portal.runtime import optimizer_config_from_env
    from portal.server import serve as serve_app
    from portal.wsgi import TARGET

    given = {"flags_url": flags_url, "redis_url": redis_url, "database_url": database_url}
    settings = _settings(**given)
    try:
        config = optimizer_config_from_env(os.environ)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    if workers > 1 and not settings.redis_url and not settings.database_url.startswith("postgresql"):
        raise click.UsageError(
            "--workers > 1 needs --redis-url or a PostgreSQL database: without either a submission "
            "would only invalidate the worker that took it, and other workers would serve stale attempts"
        )
    gate = (
        f"flag at {settings.flags_url}"
        if settings.flags_url
        else f"static ({'on' if settings.optimize else 'off'})"
    )
    click.echo(
        f"portal on http://{host}:{port}  gate: {gate}  database: {settings.database_url}  "
        f"server: {'flask dev' if dev else f'{server}, {workers} x {threads} threads'}",
        err=True,
    )
    if dev:
        create_app(settings, config).run(host=host, port=port, threaded=True)
        return
    # The workers build the app from the environment: the options given here go there first.
    os.environ.update({_SERVE_ENV[name]: value for name, value in given.items() if value is not None})
    serve_app(TARGET, server=server, host=host, port=port, workers=workers, threads=threads)


@command.command("seed")
@click.option("--students", type=click.IntRange(min=1), default=10_000, show_default=True)
@click.option("--series", type=click.IntRange(min=1), default=12, show_default=True)
@click.option("--exams", type=click.IntRange(min=1), default=5, show_default=True, help="Exams per series.")
@click.option(
    "--attempts", type=click.IntRange(min=0), default=2, show_default=True, help="Past attempts per series."
)
@click.option("--database-url", default=None, help="[env ROLLGUARD_PORTAL_DATABASE_URL]")
@click.option("--reset", is_flag=True, help="Drop and recreate the tables first.")
def seed_command(
    students: int, series: int, exams: int, attempts: int, database_url: str | None, reset: bool
) -> None:
    """Fill the portal's database (idempotent: only what is missing is added)."""
    from portal.db import make_engine
    from portal.seed import SeedPlan, seed

    settings = _settings(database_url=database_url)
    engine = make_engine(settings.database_url)
    plan = SeedPlan(students=students, series=series, exams_per_series=exams, attempts_per_series=attempts)
    started = time.monotonic()

    step = max(students // 10, 1)
    shown = [0]

    def progress(done: int, total: int) -> None:
        if done - shown[0] >= step or done == total:
            shown[0] = done
            click.echo(f"seeding students {done}/{total}", err=True)

    result = seed(engine, plan, reset=reset, progress=progress)
    engine.dispose()
    click.echo(
        f"seeded {result.students_added} students and {result.attempts_added} attempts "
        f"in {time.monotonic() - started:.1f}s ({settings.database_url})",
        err=True,
    )
