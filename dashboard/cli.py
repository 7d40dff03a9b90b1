"""`rollguard dashboard`: runs the Streamlit app as a subprocess.

`rollguard.cli` imports `command` from here only when the dashboard is asked for.
Configuration reaches the app through the environment, which `dashboard/app.py`
reads once per run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import click

APP = Path(__file__).resolve().parent / "app.py"


def streamlit_argv(*, host: str, port: int) -> list[str]:
    """The command line that serves the dashboard on host:port."""
    return [
        sys.executable,
        "-m",
        "streamlit",
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
def command(
    host: str, port: int, flags_url: str | None, operator: str | None, refresh_s: float | None
) -> None:
    """The operator dashboard (Streamlit)."""
    env = dict(os.environ)
    if flags_url:
        env["ROLLGUARD_FLAGS_URL"] = flags_url
    if operator:
        env["ROLLGUARD_DASHBOARD_OPERATOR"] = operator
    if refresh_s:
        env["ROLLGUARD_DASHBOARD_REFRESH_S"] = str(refresh_s)
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
