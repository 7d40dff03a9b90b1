"""`rollguard flags ...`: run the flag service, and admin actions through its API.

`serve` migrates the database, ensures the bootstrap tokens and starts the
server. The other commands use `flags.client.FlagsClient` against
ROLLGUARD_FLAGS_URL with ROLLGUARD_ADMIN_TOKEN, print a table (or JSON with
--json), and exit 1 with the server's message when it refuses or is down.
"""

from __future__ import annotations

import getpass
import json
import logging
import socket
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any, TypeVar

import click
import httpx

from flags import output
from flags.client import DEFAULT_FLAGS_URL, Event, FlagsClient, FlagsError, FlagsUnavailable

F = TypeVar("F", bound=Callable[..., Any])


@click.group()
@click.option(
    "--url",
    envvar="ROLLGUARD_FLAGS_URL",
    default=DEFAULT_FLAGS_URL,
    show_default=True,
    help="Flag service URL [env ROLLGUARD_FLAGS_URL].",
)
@click.option(
    "--token", envvar="ROLLGUARD_ADMIN_TOKEN", default=None, help="Admin token [env ROLLGUARD_ADMIN_TOKEN]."
)
@click.option("--actor", default=None, help="Actor named in the audit log [default: the OS user].")
@click.pass_context
def command(ctx: click.Context, url: str, token: str | None, actor: str | None) -> None:
    """The flag service and its admin actions."""
    # Request lines from the HTTP client, and Alembic's plugin announcements, would drown the
    # command's own output.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    ctx.obj = {"url": url, "token": token, "actor": actor}


@command.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=4242, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--database-url",
    default=None,
    help="SQLAlchemy URL [env ROLLGUARD_DATABASE_URL, default sqlite:///./var/flags.db].",
)
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(1, 64),
    help="gunicorn workers [env ROLLGUARD_FLAGS_WORKERS, default 2].",
)
@click.option("--dev", is_flag=True, help="Run the Werkzeug development server instead of gunicorn.")
def serve(host: str, port: int, database_url: str | None, workers: int | None, dev: bool) -> None:
    """Run the flag service."""
    from pydantic import ValidationError
    from sqlalchemy.exc import ArgumentError, OperationalError

    from flags.greenlets import cooperate
    from flags.settings import Settings

    overrides: dict[str, Any] = {}
    if database_url:
        overrides["database_url"] = database_url
    if workers:
        overrides["flags_workers"] = workers
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise click.ClickException(f"bad configuration: {exc}") from exc
    _check_port(host, port)
    cooperate(settings, dev=dev)
    # Imported only now: they import psycopg, which must come after gevent's patch.
    from flags.server import run
    from flags.startup import prepare

    try:
        prepare(settings)
    except (OperationalError, ArgumentError) as exc:
        raise click.ClickException(f"cannot prepare the database: {exc}") from exc
    run(settings, host=host, port=port, dev=dev)


def _check_port(host: str, port: int) -> None:
    """Fail with a clear message before migrating if the address cannot be listened on."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


def _client(ctx: click.Context) -> FlagsClient:
    obj = ctx.obj
    return FlagsClient(obj["url"], obj["token"], actor=obj["actor"] or getpass.getuser(), retries=1)


def _reports_errors(func: F) -> F:
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FlagsError as exc:
            details = f" {json.dumps(exc.details)}" if exc.details else ""
            click.echo(f"error: {exc.status} {exc.code}: {exc.message}{details}", err=True)
            sys.exit(1)
        except FlagsUnavailable as exc:
            click.echo(f"error: flag service unavailable: {exc}", err=True)
            sys.exit(1)
        except httpx.InvalidURL as exc:
            click.echo(f"error: bad flag service URL: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


@command.command("list")
@_json_option
@click.pass_context
@_reports_errors
def list_(ctx: click.Context, as_json: bool) -> None:
    """List flags."""
    with _client(ctx) as client:
        flags = client.list_flags()
    if as_json:
        output.show_json(flags)
        return
    rows = [(f.key, f.enabled, f"{f.rollout}%", f.state, f.version, output.when(f.updated_at)) for f in flags]
    click.echo(output.table(["key", "enabled", "rollout", "state", "version", "updated_at"], rows))


@command.command()
@click.argument("key")
@_json_option
@click.pass_context
@_reports_errors
def get(ctx: click.Context, key: str, as_json: bool) -> None:
    """Show one flag."""
    with _client(ctx) as client:
        output.show_flag(client.get_flag(key), as_json)


def _json_value(kind: type) -> Callable[[click.Context, click.Parameter, str | None], Any]:
    def parse(_ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
        if value is None:
            return None
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not valid JSON: {exc}", param=param) from exc
        if not isinstance(parsed, kind):
            raise click.BadParameter(f"must be a JSON {kind.__name__}", param=param)
        return parsed

    return parse


def _stages(_ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError as exc:
        raise click.BadParameter("stages are comma-separated integers, e.g. 10,50,100", param=param) from exc


@command.command()
@click.argument("key")
@click.option("--description", default=None)
@click.option("--enabled/--disabled", default=None, help="Start switched on or off [server default: off].")
@click.option("--rollout", type=click.IntRange(0, 100), default=None)
@click.option("--stages", callback=_stages, default=None, help="e.g. 10,50,100")
@click.option("--stage-hold-s", type=click.IntRange(0), default=None)
@click.option("--auto-promote/--no-auto-promote", default=None)
@click.option("--guardrails", callback=_json_value(list), default=None, help="JSON list of guardrails.")
@click.option("--payload", callback=_json_value(dict), default=None, help="JSON object handed to the app.")
@click.option("--reason", default=None)
@_json_option
@click.pass_context
@_reports_errors
def create(ctx: click.Context, /, key: str, reason: str | None, as_json: bool, **fields: Any) -> None:
    """Create a flag."""
    given = {name: value for name, value in fields.items() if value is not None}
    with _client(ctx) as client:
        output.show_flag(client.create_flag(key, reason=reason, **given), as_json)


@command.command("set-rollout")
@click.argument("key")
@click.argument("rollout", type=click.IntRange(0, 100))
@click.option("--reason", default=None)
@_json_option
@click.pass_context
@_reports_errors
def set_rollout(ctx: click.Context, key: str, rollout: int, reason: str | None, as_json: bool) -> None:
    """Set a flag's rollout percentage."""
    with _client(ctx) as client:
        output.show_flag(client.set_rollout(key, rollout, reason=reason), as_json)


@command.command()
@click.argument("key")
@click.option("--reason", required=True, help="Why, for the audit log.")
@_json_option
@click.pass_context
@_reports_errors
def kill(ctx: click.Context, key: str, reason: str, as_json: bool) -> None:
    """Switch a flag off for everyone."""
    with _client(ctx) as client:
        output.show_flag(client.kill(key, reason=reason), as_json)


@command.command()
@click.argument("key")
@click.option("--reason", required=True, help="Why, for the audit log.")
@_json_option
@click.pass_context
@_reports_errors
def resume(ctx: click.Context, key: str, reason: str, as_json: bool) -> None:
    """Switch a flag back on at its rollout."""
    with _client(ctx) as client:
        output.show_flag(client.resume(key, reason=reason), as_json)


@command.command()
@click.option("--flag", default=None)
@click.option("--since", type=click.DateTime(), default=None, help="ISO time (UTC if no zone).")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@_json_option
@click.pass_context
@_reports_errors
def events(ctx: click.Context, flag: str | None, since: datetime | None, limit: int, as_json: bool) -> None:
    """Show the audit log, newest first."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    with _client(ctx) as client:
        found: list[Event] = client.events(flag=flag, since=since, limit=limit)
    if as_json:
        output.show_json(found)
        return
    rows = [
        (e.id, e.time.isoformat(timespec="seconds"), e.flag or "-", e.actor, e.action, e.reason or "")
        for e in found
    ]
    click.echo(output.table(["id", "time", "flag", "actor", "action", "reason"], rows))


@command.command()
@_json_option
@click.pass_context
@_reports_errors
def tokens(ctx: click.Context, as_json: bool) -> None:
    """List API tokens (never their secrets)."""
    with _client(ctx) as client:
        found = client.list_tokens()
    if as_json:
        output.show_json(found)
        return
    rows = [(t.id, t.name, t.scope, output.when(t.created_at), t.revoked) for t in found]
    click.echo(output.table(["id", "name", "scope", "created_at", "revoked"], rows))


@command.command("token-create")
@click.argument("name")
@click.option("--scope", type=click.Choice(["client", "admin"]), default="client", show_default=True)
@click.pass_context
@_reports_errors
def token_create(ctx: click.Context, name: str, scope: str) -> None:
    """Create a token and print its secret (shown this once)."""
    with _client(ctx) as client:
        token = client.create_token(name, scope)
    click.echo(token.secret)


@command.command("token-revoke")
@click.argument("token_id", type=int)
@click.pass_context
@_reports_errors
def token_revoke(ctx: click.Context, token_id: int) -> None:
    """Revoke a token."""
    with _client(ctx) as client:
        client.revoke_token(token_id)
    click.echo(f"revoked token {token_id}")


@command.command("import")
@click.argument("document", type=click.File("r"))
@click.option("--replace", is_flag=True, help="Drop imported Unleash features missing from the document.")
@click.pass_context
@_reports_errors
def import_(ctx: click.Context, document: Any, replace: bool) -> None:
    """Import a JSON file (or - for stdin): a Rollguard export, Unleash's client document, or
    Unleash 8's features-batch export or import document.

    Prints the result as JSON; what could not be carried over is listed in it
    (`report`) and, one line per item, on stderr.
    """
    try:
        parsed = json.load(document)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="DOCUMENT") from exc
    if not isinstance(parsed, dict):
        raise click.BadParameter("must be a JSON object", param_hint="DOCUMENT")
    with _client(ctx) as client:
        result = client.import_unleash(parsed, replace=replace)
    output.show_json(result)
    _show_report(result["report"])


@command.command()
@click.option(
    "--format",
    "kind",
    type=click.Choice(["rollguard", "unleash-import"]),
    default="rollguard",
    show_default=True,
    help="rollguard: flags, client document and segments; unleash-import: the body of Unleash 8's "
    "POST /api/admin/features-batch/import.",
)
@click.option("--project", default="default", show_default=True, help="Unleash project (unleash-import).")
@click.option(
    "--environment", default="development", show_default=True, help="Unleash environment (unleash-import)."
)
@click.pass_context
@_reports_errors
def export(ctx: click.Context, kind: str, project: str, environment: str) -> None:
    """Print what is served as JSON, in a form `import` (or Unleash 8) accepts.

    With --format unleash-import, what Unleash cannot take is listed on stderr, one line per item.
    """
    with _client(ctx) as client:
        if kind == "rollguard":
            output.show_json(client.export_unleash())
            return
        exported = client.export_unleash_import(project=project, environment=environment)
    output.show_json(exported["document"])
    _show_report(exported["report"])


def _show_report(report: list[dict[str, Any]]) -> None:
    for loss in report:
        where = loss["feature"] or "(document)"
        verdict = "left out" if loss["left_out"] else "carried, but"
        click.echo(f"{where}: {verdict}: {loss['reason']}", err=True)
