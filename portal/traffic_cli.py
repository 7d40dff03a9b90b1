"""`rollguard traffic run`: replay one of the incident's scenarios against a live portal.

Progress goes to stderr every few seconds; the JSON summary to stdout (and to
--json-out). Runs in its own process: it imports locust, which monkeypatches
the standard library with gevent.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click

from portal.notes import Notes
from portal.scenarios import SCENARIOS


@click.group("traffic")
def command() -> None:
    """Replay the incident's traffic against a portal."""


@command.command("run")
@click.option("--scenario", type=click.Choice(sorted(SCENARIOS)), required=True)
@click.option("--users", type=click.IntRange(min=1), required=True, help="Virtual users, one student each.")
@click.option("--duration", type=click.FloatRange(min=0.5), required=True, help="Seconds.")
@click.option(
    "--target",
    default=lambda: os.environ.get("ROLLGUARD_PORTAL_URL", "http://127.0.0.1:8000"),
    show_default="$ROLLGUARD_PORTAL_URL or http://127.0.0.1:8000",
)
@click.option("--spawn-rate", type=click.FloatRange(min=0.1), default=None, help="Users started per second.")
@click.option("--first-student", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Randomness of the plans.")
@click.option("--json-out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option(
    "--settle",
    "settle_s",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Longest wait after the run for the portal's counters to settle (shorten it when other traffic runs).",
)
@click.option(
    "--flags-url",
    default=lambda: os.environ.get("ROLLGUARD_FLAGS_URL"),
    show_default="$ROLLGUARD_FLAGS_URL",
    help="Flag service to annotate the run's start and end on (with $ROLLGUARD_ADMIN_TOKEN); none: no notes.",
)
def run_command(
    scenario: str,
    users: int,
    duration: float,
    target: str,
    spawn_rate: float | None,
    first_student: int,
    seed: int,
    json_out: Path | None,
    settle_s: float,
    flags_url: str | None,
) -> None:
    """Drive real HTTP against the portal and print a JSON summary."""
    # Imported here: locust patches the standard library as it loads.
    from portal.traffic import RunOptions, TrafficError, run

    # One line per scrape would drown the progress lines.
    logging.getLogger("httpx").setLevel(logging.WARNING)

    options = RunOptions(
        scenario=scenario,
        users=users,
        duration_s=duration,
        target=target,
        spawn_rate=spawn_rate,
        first_student=first_student,
        seed=seed,
        settle_s=settle_s,
    )
    what = f"{scenario}, {users} users, {duration:g}s against {target}"
    click.echo(f"traffic: {what}", err=True)
    notes = Notes(flags_url, os.environ.get("ROLLGUARD_ADMIN_TOKEN"))
    notes.add(f"{scenario} starts: {users} users for {duration:g}s", kind=f"{scenario}-start")
    try:
        summary = run(options, out=sys.stderr)
    except TrafficError as exc:
        notes.add(f"{scenario} failed: {exc}", kind=f"{scenario}-end")
        raise click.ClickException(str(exc)) from exc
    notes.add(f"{scenario} ends", kind=f"{scenario}-end")
    text = json.dumps(summary, indent=2)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(text + "\n")
    click.echo(text)
