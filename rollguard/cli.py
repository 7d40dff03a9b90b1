"""The `rollguard` command line: one entry point whose groups live in each part.

Each part owns its commands in `<part>/cli.py` and exposes a click group there;
this module only wires them together, importing a part when its group is used so
that `rollguard flags list` never loads Streamlit or locust.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from dataclasses import dataclass

import click

_OWN = frozenset({"rollguard", "flags", "optimizer", "portal", "control", "alerts", "dashboard"})

# Which pip extra brings a third-party module a command needs at run time.
_EXTRA_OF_MODULE = {
    **dict.fromkeys(
        (
            "flask",
            "werkzeug",
            "sqlalchemy",
            "alembic",
            "flask_smorest",
            "marshmallow",
            "gunicorn",
            "psycopg",
            "prometheus_api_client",
            "granian",
            "orjson",
            "gevent",
            "yaml",
        ),
        "server",
    ),
    **dict.fromkeys(("streamlit", "plotly"), "dashboard"),
    **dict.fromkeys(("locust",), "traffic"),
}


@dataclass(frozen=True)
class _Group:
    module: str
    help: str
    extra: str  # the pip extra that brings this group's dependencies


_GROUPS: dict[str, _Group] = {
    "flags": _Group("flags.cli", "The flag service and its admin actions.", "server"),
    "portal": _Group("portal.cli", "The reference exam portal.", "server"),
    "traffic": _Group("portal.traffic_cli", "Replay the incident's traffic against a portal.", "traffic"),
    "control": _Group("control.control_cli", "The rollout controller.", "server"),
    "alerts": _Group("alerts.cli", "Prometheus rules and the Alertmanager receiver.", "server"),
    "dashboard": _Group("dashboard.cli", "The operator dashboard.", "dashboard"),
    "up": _Group("rollguard.up", "Run the whole demo on embedded defaults.", "all"),
}


def _missing_extra(exc: ModuleNotFoundError, extra: str | None = None) -> click.ClickException | None:
    """The error to show when an optional dependency is not installed, or None for any other import error."""
    missing = (exc.name or "").partition(".")[0]
    extra = _EXTRA_OF_MODULE.get(missing, extra)
    if extra is None:
        return None
    return click.ClickException(
        f"this command needs the '{extra}' extra (missing module {missing!r}): pip install 'rollguard[{extra}]'"
    )


def _load(group: _Group) -> click.Command:
    try:
        module = importlib.import_module(group.module)
    except ModuleNotFoundError as exc:
        own = (exc.name or "").partition(".")[0] in _OWN
        error = _missing_extra(exc, None if own else group.extra)
        if error is None:
            raise
        raise error from exc
    command: click.Command = module.command
    return command


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_GROUPS)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Listing the commands must not import every part.
        rows = [(name, _GROUPS[name].help) for name in sorted(_GROUPS)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        group = _GROUPS.get(cmd_name)
        return None if group is None else _load(group)


@click.group(cls=_LazyGroup, name="rollguard")
@click.option(
    "--log-level", default=lambda: os.environ.get("ROLLGUARD_LOG_LEVEL", "INFO"), show_default="INFO"
)
def cli(log_level: str) -> None:
    """Rollguard: roll out risky performance optimizations safely."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # One line per HTTP request from the client libraries drowns the commands' own output.
    for noisy in ("httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def main() -> None:
    """Run the command line; a missing optional dependency is reported with the extra that brings it."""
    try:
        cli.main()
    except ModuleNotFoundError as exc:
        error = _missing_extra(exc)
        if error is None:
            raise
        error.show()
        sys.exit(error.exit_code)
