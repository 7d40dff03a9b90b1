"""`rollguard dashboard`: runs the Streamlit app as a subprocess.

`rollguard.cli` imports `command` from here only when the dashboard is asked for.
Configuration reaches the app through the environment, which `dashboard/app.py`
reads once per run.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path

import click

from dashboard.settings import DashboardSettings

APP = Path(__file__).resolve().parent / "app.py"


def streamlit_argv(*, host: str, port: int) -> list[str]:
    """The command line that serves the dashboard on host:port (see `dashboard.server`)."""
    return [
        sys.executable,
        "-m",
        "dashboard.server",
        "run",
        str(APP),
        "--server.headless=true",
        "--browser.gatherUsageStats=false",
        f"--server.address={host}",
        f"--server.port={port}",
        "--server.fileWatcherType=none",
        "--global.developmentMode=false",
        "--client.toolbarMode=viewer",
    ]


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def has_authentication(environ: Mapping[str, str], cwd: Path) -> bool:
    """Whether the dashboard will ask for a password or single sign-on (Streamlit secrets `[auth]`)."""
    if environ.get("ROLLGUARD_DASHBOARD_PASSWORD"):
        return True
    for folder in (cwd, Path.home()):
        secrets = folder / ".streamlit" / "secrets.toml"
        try:
            if "auth" in tomllib.loads(secrets.read_text()):
                return True
        except (OSError, tomllib.TOMLDecodeError):
            continue
    return False


@click.command("dashboard")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8501, show_default=True, type=int, help="Port to listen on.")
@click.option("--flags-url", envvar="ROLLGUARD_FLAGS_URL", help="The flag service's base URL.")
@click.option(
    "--operator", envvar="ROLLGUARD_DASHBOARD_OPERATOR", help="Name in the audit log (default: OS user)."
)
@click.option(
    "--refresh",
    "refresh_s",
    envvar="ROLLGUARD_DASHBOARD_REFRESH_S",
    type=float,
    help="Data refresh interval, s.",
)
@click.option(
    "--insecure-no-auth",
    is_flag=True,
    help="Serve a non-loopback address without a password or single sign-on (anyone who can reach it may act).",
)
def command(
    host: str,
    port: int,
    flags_url: str | None,
    operator: str | None,
    refresh_s: float | None,
    insecure_no_auth: bool,
) -> None:
    """The operator dashboard (Streamlit)."""
    if not is_loopback(host) and not has_authentication(os.environ, Path.cwd()):
        if not insecure_no_auth:
            raise click.UsageError(
                f"--host {host} is reachable from other machines and the dashboard has no authentication: "
                "set ROLLGUARD_DASHBOARD_PASSWORD (or an [auth] section in .streamlit/secrets.toml), "
                "or pass --insecure-no-auth"
            )
        click.echo(f"warning: the dashboard on {host} has no authentication", err=True)
    env = dict(os.environ)
    if flags_url:
        env["ROLLGUARD_FLAGS_URL"] = flags_url
    if operator:
        env["ROLLGUARD_DASHBOARD_OPERATOR"] = operator
    if refresh_s:
        env["ROLLGUARD_DASHBOARD_REFRESH_S"] = str(refresh_s)
    try:
        DashboardSettings.from_env(env)
    except ValueError as exc:
        # Refused here, in one line, rather than by an app that would show only this error.
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Rollguard dashboard on http://{host}:{port}", err=True)
    process = subprocess.Popen(streamlit_argv(host=host, port=port), env=env)

    def forward(signum: int, _frame: object) -> None:
        # A supervisor stops this command, not Streamlit: pass the signal on so no server is orphaned.
        process.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    try:
        code = process.wait()
    except KeyboardInterrupt:
        process.terminate()
        code = process.wait()
    sys.exit(code)
