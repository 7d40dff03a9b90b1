"""One row of the overview per flag: state, stage, health and the last change.

The overview page calls `flag_rows`; it gathers what `data.py` fetched and
judges health with `health.py`. The badge comes from the controller's latest
verdicts while a controller is running, and from the dashboard's own checks on
the metric source otherwise, so it means something in both cases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from control import Verdict
from dashboard import data
from dashboard.health import Health, badge, latest_verdicts
from dashboard.settings import DashboardSettings
from flags.client import Event, Flag

VERDICT_HORIZON = timedelta(minutes=15)


@dataclass(frozen=True)
class FlagRow:
    flag: Flag
    health: Health
    checks: tuple[Verdict, ...]
    last_change: Event | None

    @property
    def stage(self) -> str:
        stages = self.flag.stages
        if self.flag.rollout in stages:
            return f"{stages.index(self.flag.rollout) + 1}/{len(stages)}"
        reached = [s for s in stages if s <= self.flag.rollout]
        return f"{len(reached)}/{len(stages)} (off plan)"

    @property
    def change_text(self) -> str:
        event = self.last_change
        if event is None:
            return ""
        why = f": {event.reason}" if event.reason else ""
        return f"{event.action} by {event.actor} at {event.time:%Y-%m-%d %H:%M:%S}{why}"


def flag_health(
    settings: DashboardSettings, flag: Flag, *, controller_live: bool
) -> tuple[Health, list[Verdict]]:
    """Health of one flag and the live checks behind it (raises SourceDown)."""
    checks = data.live_checks(settings, flag) if flag.enabled and flag.guardrails else []
    if controller_live:
        recent = data.verdicts(settings, flag.key, since=data.now() - VERDICT_HORIZON)
        latest = latest_verdicts(recent)
        if latest:
            return badge(flag, [v.verdict for v in latest.values()]), checks
    return badge(flag, [c.verdict for c in checks]), checks


def flag_rows(
    settings: DashboardSettings, flags: Sequence[Flag], *, controller_live: bool
) -> tuple[list[FlagRow], data.SourceDown | None]:
    """Rows for every flag; health is UNKNOWN and the error returned when metrics are down."""
    changes = data.last_changes(settings, [f.key for f in flags])
    rows: list[FlagRow] = []
    metric_error: data.SourceDown | None = None
    for flag in flags:
        health = Health.OFF if not flag.enabled else Health.UNKNOWN
        checks: list[Verdict] = []
        if metric_error is None:
            try:
                health, checks = flag_health(settings, flag, controller_live=controller_live)
            except data.SourceDown as error:
                metric_error = error
        rows.append(FlagRow(flag, health, tuple(checks), changes.get(flag.key)))
    return rows, metric_error
