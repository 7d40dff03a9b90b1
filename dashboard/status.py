"""One row of the overview per flag: state, stage, health and the last change.

The overview page calls `flag_rows`; it gathers what `data.py` fetched and
sums health up with `health.py`. The badge comes from the controller's last
check of the flag while it is recent; otherwise the flag is "not judged" and
the flag page says why. The dashboard never judges a guardrail itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from control import LastCheck, VerdictRecord
from dashboard import data
from dashboard.health import Health, badge
from dashboard.settings import DashboardSettings
from flags.client import Event, Flag


@dataclass(frozen=True)
class FlagRow:
    flag: Flag
    health: Health
    checks: tuple[VerdictRecord, ...]
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


def flag_health(settings: DashboardSettings, flag: Flag) -> tuple[Health, LastCheck]:
    """Health of one flag and the controller's last check behind it (raises SourceDown)."""
    check = data.last_check(settings, flag)
    return health_of(flag, check), check


def health_of(flag: Flag, check: LastCheck) -> Health:
    """The badge of a flag: off, not judged, or what the verdicts of the controller's last check say."""
    if not flag.enabled:
        return Health.OFF
    if not check.judged:
        return Health.NOT_JUDGED
    return badge(flag, [v.verdict for v in check.verdicts])


def flag_rows(
    settings: DashboardSettings, flags: Sequence[Flag]
) -> tuple[list[FlagRow], data.SourceDown | None]:
    """Rows for every flag; health is UNKNOWN and the error returned when metrics are down."""
    changes = data.last_changes(settings, [f.key for f in flags])
    rows: list[FlagRow] = []
    metric_error: data.SourceDown | None = None
    for flag in flags:
        health = Health.OFF if not flag.enabled else Health.UNKNOWN
        checks: tuple[VerdictRecord, ...] = ()
        if metric_error is None:
            try:
                health, check = flag_health(settings, flag)
                checks = check.verdicts
            except data.SourceDown as error:
                metric_error = error
        rows.append(FlagRow(flag, health, checks, changes.get(flag.key)))
    return rows, metric_error
