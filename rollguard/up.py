"""`rollguard up`: the whole system on embedded defaults, playing the incident's story.

Starts the flag service, a seeded portal, the controller on the embedded metric
scraper, the Alertmanager receiver, the dashboard and the traffic generator,
then plays: steady traffic with the optimization at 10%; healthy, so the
controller promotes it to 50%; a mass submission of up to 2,000 students,
which the default guardrails (`control.defaults`) must let through; a fault
injected into the optimized path; the portal's local circuit breaker trips
(read from its /metrics) and the controller rolls the flag back, each printed
when seen. Everything lives under `./var/` (SQLite files, logs in
`./var/logs/`); Ctrl-C stops every process.

A JSON record of the story, `./var/story.json`, is rewritten (atomically) from
the start and after every step: the URLs, the pid of each child (also its
process group), the events so far, and `stopped` once every process is down,
so that an operator or a test can follow the demo while it runs.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import click
import httpx
from prometheus_client.parser import text_string_to_metric_families

from rollguard.play import Demo, Options, play
from rollguard.processes import Child, ChildFailed, Supervisor, pick_port
from rollguard.secretfile import write_private
from rollguard.story import StopDemo, Story

DEFAULT_PORTS = {
    "flags": 4242,
    "portal": 8000,
    "alerts": 9099,
    "dashboard": 8501,
    "prometheus": 9090,
    "alertmanager": 9093,
}


@click.command(name="up")
@click.option(
    "--duration", type=float, default=None, help="Stop after this many seconds (default: run until Ctrl-C)."
)
@click.option("--no-browser", is_flag=True, help="Do not open the dashboard in a browser.")
@click.option(
    "--with-prometheus", is_flag=True, help="Also run Prometheus and Alertmanager (configs in deploy/)."
)
@click.option("--var-dir", type=click.Path(path_type=Path), default=Path("var"), show_default=True)
@click.option(
    "--students", type=int, default=2000, show_default=True, help="Students to seed the portal with."
)
@click.option(
    "--stage-hold",
    "stage_hold_s",
    type=int,
    default=45,
    show_default=True,
    help="Seconds a stage must stay healthy before promotion.",
)
@click.option("--free-ports", is_flag=True, help="Use any free ports instead of the defaults.")
@click.option("--stop-when-done", is_flag=True, help="Stop as soon as the story is over.")
def command(
    duration: float | None,
    no_browser: bool,
    with_prometheus: bool,
    var_dir: Path,
    students: int,
    stage_hold_s: int,
    free_ports: bool,
    stop_when_done: bool,
) -> None:
    """Run the whole demo on embedded defaults."""
    var_dir = var_dir.resolve()
    var_dir.mkdir(parents=True, exist_ok=True)
    ports = {name: pick_port(None if free_ports else default) for name, default in DEFAULT_PORTS.items()}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    tokens = new_secrets()
    env = environment(var_dir, urls, tokens)
    write_private(
        var_dir / "demo.env",
        "".join(f"export {k}={env[k]}\n" for k in sorted(tokens) + ["ROLLGUARD_FLAGS_URL"]),
    )
    story = Story(path=var_dir / "story.json", started_at=datetime.now(UTC).isoformat(), urls=urls)
    story.save()

    def _started(child: Child) -> None:
        story.processes[child.name] = child.pid
        story.save()

    supervisor = Supervisor(log_dir=var_dir / "logs", env=env, cwd=Path.cwd(), on_start=_started)
    options = Options(students, stage_hold_s, not no_browser, with_prometheus, stop_when_done)
    t0 = time.monotonic()
    demo = Demo(
        supervisor,
        story,
        urls,
        ports,
        tokens,
        var_dir,
        options,
        t0,
        t0 + duration if duration else float("inf"),
    )
    with _stopping_on_signals(supervisor):
        try:
            play(demo)
        except StopDemo:
            demo.say("stopping (interrupted)")
        except ChildFailed as exc:
            demo.say("a process failed; stopping", error=str(exc))
            raise click.ClickException(str(exc)) from exc
        finally:
            _stop_everything(demo)


def new_secrets() -> dict[str, str]:
    """The demo's tokens and dashboard password, new for every run."""
    return {
        "ROLLGUARD_ADMIN_TOKEN": "admin-" + secrets.token_hex(16),
        "ROLLGUARD_CLIENT_TOKEN": "client-" + secrets.token_hex(16),
        "ROLLGUARD_PORTAL_ADMIN_TOKEN": "portal-" + secrets.token_hex(16),
        "ROLLGUARD_ALERTS_TOKEN": "alerts-" + secrets.token_hex(16),
        "ROLLGUARD_DASHBOARD_PASSWORD": secrets.token_urlsafe(12),
    }


def environment(var_dir: Path, urls: dict[str, str], tokens: dict[str, str]) -> dict[str, str]:
    """The environment every child starts with: the secrets, SQLite under `var_dir`, where the others are."""
    return {
        **os.environ,
        **tokens,
        "ROLLGUARD_DATABASE_URL": f"sqlite:///{var_dir / 'flags.db'}",
        "ROLLGUARD_PORTAL_DATABASE_URL": f"sqlite:///{var_dir / 'portal.db'}",
        "ROLLGUARD_CONTROL_DATABASE_URL": f"sqlite:///{var_dir / 'control.db'}",
        "ROLLGUARD_ALERTS_DATABASE_URL": f"sqlite:///{var_dir / 'alerts.db'}",
        "ROLLGUARD_FLAGS_URL": urls["flags"],
        "ROLLGUARD_SCRAPE_TARGETS": urls["portal"],
        "ROLLGUARD_METRICS": "embedded",
        # The portal's SDK polls the flag every second, so a rollback reaches it within one.
        "ROLLGUARD_PORTAL_FLAGS_REFRESH_S": "1",
        "ROLLGUARD_VAR_DIR": str(var_dir),
    }


@contextlib.contextmanager
def _stopping_on_signals(supervisor: Supervisor) -> Iterator[None]:
    """Ctrl-C and SIGTERM stop the story (raised as StopDemo); while stopping, a second one only says so."""

    def _interrupt(signum: int, frame: FrameType | None) -> None:
        supervisor.raise_or_hold(StopDemo())

    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _still_stopping(signum: int, frame: FrameType | None) -> None:
    # A second Ctrl-C must not abandon the children half-stopped.
    click.echo("still stopping every process (10 s grace, then SIGKILL)")


def _stop_everything(demo: Demo) -> None:
    """Record the portal's totals, stop every child, and mark the story stopped."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _still_stopping)  # restored when the signal context ends
    story, supervisor = demo.story, demo.supervisor
    if supervisor.pids().get("portal"):
        with contextlib.suppress(httpx.HTTPError):
            story.portal_metrics = _portal_totals(demo.urls["portal"])
    supervisor.stop_all()
    story.processes = supervisor.pids()
    story.stopped = True
    story.save()
    click.echo(f"stopped every process; story in {story.path}, logs in {demo.var_dir / 'logs'}")


def _portal_totals(portal_url: str) -> dict[str, float]:
    """Sum the portal's contract metrics by name and path label, for the story record."""
    text = httpx.get(f"{portal_url}/metrics", timeout=5).text
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith(("optimizer_", "portal_")) or sample.name.endswith(
                ("_bucket", "_created")
            ):
                continue
            path = sample.labels.get("path")
            name = f"{sample.name}{{path={path}}}" if path else sample.name
            totals[name] = totals.get(name, 0.0) + sample.value
    return totals
