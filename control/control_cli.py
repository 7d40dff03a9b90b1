"""`rollguard control ...`: run the controller, backtest the policy, show the controller's status.

`rollguard.cli` imports `command` from here when `rollguard control` is used.
Settings are read once here from the environment (`ControlSettings.from_env`)
and overridden by the options.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import uuid
from datetime import UTC, datetime, timedelta
from types import FrameType

import click

from control.errors import ControlError
from control.settings import ControlSettings, parse_targets

logger = logging.getLogger(__name__)


@click.group(name="control")
def command() -> None:
    """The rollout controller: guardrails, promotions, automatic rollback."""


@command.command()
@click.option(
    "--metrics",
    type=click.Choice(["embedded", "prometheus", "impact"]),
    default=None,
    help="Metric source [env ROLLGUARD_METRICS, default embedded].",
)
@click.option(
    "--interval",
    "interval_s",
    type=click.FloatRange(min=0.05),
    default=None,
    help="Seconds between evaluations [env ROLLGUARD_CONTROL_INTERVAL_S, default 1].",
)
@click.option("--dry-run", is_flag=True, default=None, help="Log and record decisions; change no flag.")
@click.option(
    "--scrape-target",
    "scrape_targets",
    multiple=True,
    help="Base or /metrics URL to scrape (repeatable) [env ROLLGUARD_SCRAPE_TARGETS].",
)
@click.option(
    "--scrape-interval",
    "scrape_interval_s",
    type=click.FloatRange(min=0.05),
    default=None,
    help="Seconds between scrapes [env ROLLGUARD_SCRAPE_INTERVAL_S, default 1].",
)
@click.option(
    "--lease",
    "lease_s",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Leader lease in seconds [env ROLLGUARD_CONTROL_LEASE_S, default 15].",
)
def run(
    metrics: str | None,
    interval_s: float | None,
    dry_run: bool | None,
    scrape_targets: tuple[str, ...],
    scrape_interval_s: float | None,
    lease_s: float | None,
) -> None:
    """Run the controller until SIGTERM or Ctrl-C (and the embedded scraper with it)."""
    from control.loop import Controller
    from control.metrics import open_source
    from control.notify import Notifier
    from control.scraper import Scraper
    from control.store import ControlStore
    from flags.client import FlagsClient

    settings = _settings(
        metrics=metrics,
        interval_s=interval_s,
        dry_run=dry_run,
        scrape_targets=scrape_targets,
        scrape_interval_s=scrape_interval_s,
        lease_s=lease_s,
    )
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    store = ControlStore(settings.database_url)
    try:
        source = open_source(settings, store=store)
    except ControlError as exc:
        raise click.ClickException(str(exc)) from exc
    flags = FlagsClient(settings.flags_url, settings.admin_token, actor="controller")
    notifier = Notifier(settings.notify_webhook_url, settings.notify_slack_url)
    controller = Controller(
        flags=flags,
        source=source,
        store=store,
        holder=holder,
        notifier=notifier,
        interval_s=settings.interval_s,
        lease_s=settings.lease_s,
        dry_run=settings.dry_run,
    )
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        logger.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    scraper_thread = None
    scraper = None
    if settings.metrics == "embedded" and settings.scrape_targets:
        scraper = Scraper(
            store,
            settings.scrape_targets,
            interval_s=settings.scrape_interval_s,
            retention_s=settings.retention_s,
        )
        scraper_thread = threading.Thread(
            target=scraper.run,
            args=(stop,),
            kwargs={"active": lambda: controller.is_leader},
            name="scraper",
            daemon=True,
        )
        scraper_thread.start()
    elif settings.metrics == "embedded":
        logger.warning(
            "embedded metrics without scrape targets: set ROLLGUARD_SCRAPE_TARGETS or --scrape-target"
        )
    logger.info(
        "controller %s: metrics %s, interval %ss, lease %ss, flags %s%s",
        holder,
        settings.metrics,
        settings.interval_s,
        settings.lease_s,
        settings.flags_url,
        ", dry run" if settings.dry_run else "",
    )
    try:
        controller.run(stop)
    finally:
        stop.set()
        if scraper_thread is not None:
            scraper_thread.join(timeout=15)
        if scraper is not None:
            scraper.close()
        flags.close()
        notifier.close()
        store.close()
        logger.info("controller %s stopped", holder)


@command.command()
@click.option("--flag", "flag_key", required=True, help="Key of the flag whose policy to replay.")
@click.option(
    "--from",
    "start",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]),
    default=None,
    help="Start (ISO, UTC if no offset) [default: oldest stored sample].",
)
@click.option(
    "--to",
    "end",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]),
    default=None,
    help="End (ISO, UTC if no offset) [default: newest stored sample].",
)
@click.option(
    "--step",
    "step_s",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Simulated seconds between checks [default: the controller interval].",
)
@click.option(
    "--start-rollout",
    type=click.IntRange(0, 100),
    default=None,
    help="Rollout to start the replay at [default: the flag's first stage].",
)
@click.option(
    "--recorded-checks",
    is_flag=True,
    help="Replay the live controller: check at the instants it checked, stages from the audit log.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def backtest(
    flag_key: str,
    start: datetime | None,
    end: datetime | None,
    step_s: float | None,
    start_rollout: int | None,
    recorded_checks: bool,
    as_json: bool,
) -> None:
    """Replay recorded metrics through the rollout policy and print what it would have done."""
    from control.backtest import backtest as run_backtest
    from control.embedded import EmbeddedSource
    from control.stages import STAGE_ACTIONS, rollout_at
    from control.store import ControlStore
    from flags.client import FlagsClient, FlagsError, FlagsUnavailable

    settings = _settings()
    store = ControlStore(settings.database_url)
    try:
        with FlagsClient(settings.flags_url, settings.admin_token) as flags:
            try:
                flag = flags.get_flag(flag_key)
                events = flags.events(flag=flag_key, limit=1000) if recorded_checks else []
            except (FlagsError, FlagsUnavailable) as exc:
                raise click.ClickException(f"cannot read flag {flag_key}: {exc}") from exc
        times = sorted({v.time for v in store.verdicts(flag_key)}) if recorded_checks else None
        if recorded_checks and not times:
            raise click.ClickException(f"the store holds no check of {flag_key} to replay")
        span = (times[0], times[-1]) if times else store.sample_span()
        if span is None and (start is None or end is None):
            raise click.ClickException("no recorded samples in the store; give --from and --to")
        default_start = span[0] if times else span[0] + timedelta(seconds=60)  # type: ignore[index]
        first = _utc(start) if start else default_start
        last = _utc(end) if end else span[1]  # type: ignore[index]
        if recorded_checks and start_rollout is None:
            acted = [
                (d.time, d.rollout)
                for d in store.decisions(flag_key)
                if not d.dry_run and d.rollout is not None and d.action in STAGE_ACTIONS
            ]
            start_rollout = rollout_at(events, first, acted=acted)
        result = run_backtest(
            flag,
            EmbeddedSource(store),
            start=first,
            end=last,
            step_s=step_s or settings.interval_s,
            start_rollout=start_rollout,
            times=times,
            events=events,
        )
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    click.echo(
        f"{flag_key}: {result.checks} checks from {result.start.isoformat()} to {result.end.isoformat()} "
        f"(verdicts: {', '.join(f'{k} {v}' for k, v in result.verdict_counts.items())})"
    )
    if not result.events:
        click.echo("  no promotion or rollback would have happened")
    for event in result.events:
        click.echo(
            f"  {event.time.isoformat()}  {event.action:<8} {event.rollout_before}% -> {event.rollout_after}%"
            f"  {event.reason}"
        )


@command.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option(
    "--decisions",
    "limit",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="How many recent promotions/rollbacks to list.",
)
def status(as_json: bool, limit: int) -> None:
    """Show which controller leads, when it last evaluated, and its recent actions."""
    from control.stages import STAGE_ACTIONS
    from control.store import ControlStore

    settings = _settings()
    store = ControlStore(settings.database_url)
    try:
        lease = store.controller_status()
        acted = [d for d in store.decisions() if d.action in STAGE_ACTIONS][-limit:] if limit else []
    finally:
        store.close()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "leader": None
                    if lease is None
                    else {
                        "holder": lease.holder,
                        "acquired_at": lease.acquired_at.isoformat(),
                        "expires_at": lease.expires_at.isoformat(),
                        "is_live": lease.is_live,
                        "last_evaluation_at": lease.last_evaluation_at.isoformat()
                        if lease.last_evaluation_at
                        else None,
                    },
                    "decisions": [
                        {
                            "time": d.time.isoformat(),
                            "flag": d.flag,
                            "action": d.action,
                            "reason": d.reason,
                            "dry_run": d.dry_run,
                            "rollout": d.rollout,
                        }
                        for d in acted
                    ],
                },
                indent=2,
            )
        )
        return
    if lease is None:
        click.echo("no controller has run against this store")
    else:
        state = "live" if lease.is_live else "expired"
        last = lease.last_evaluation_at.isoformat() if lease.last_evaluation_at else "never"
        click.echo(
            f"leader {lease.holder} ({state}, lease until {lease.expires_at.isoformat()}), last evaluation {last}"
        )
    for d in acted:
        click.echo(
            f"  {d.time.isoformat()}  {d.flag}  {d.action}{' (dry run)' if d.dry_run else ''}  {d.reason}"
        )


def _settings(
    *,
    metrics: str | None = None,
    interval_s: float | None = None,
    dry_run: bool | None = None,
    scrape_targets: tuple[str, ...] = (),
    scrape_interval_s: float | None = None,
    lease_s: float | None = None,
) -> ControlSettings:
    try:
        settings = ControlSettings.from_env(os.environ)
    except ControlError as exc:
        raise click.ClickException(str(exc)) from exc
    changes: dict[str, object] = {}
    if metrics:
        changes["metrics"] = metrics
    if interval_s:
        changes["interval_s"] = interval_s
        if lease_s is None and "ROLLGUARD_CONTROL_LEASE_S" not in os.environ:
            changes["lease_s"] = max(3 * interval_s, 1.0)
    if dry_run:
        changes["dry_run"] = True
    if scrape_targets:
        changes["scrape_targets"] = parse_targets(list(scrape_targets))
    if scrape_interval_s:
        changes["scrape_interval_s"] = scrape_interval_s
    if lease_s:
        changes["lease_s"] = lease_s
    return settings.model_copy(update=changes)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
