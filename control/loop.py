"""The decision loop: every interval, if this controller leads, check and act on every flag.

Run by `rollguard control run`. Each tick: take or renew the leader lease in the
store (a standby does nothing else); read all flags from the flag service;
for each flag rolling out or paused, judge its guardrails and record the
verdicts; for a flag rolling out and enabled, decide from the recorded
verdicts since its stage started (the flag's `stage_started_at`, with the
controller's own actions from the store: `control.stages`) and act through
the admin API as actor "controller" with the reason, then notify. A tick reads
the flag service once, whatever the number of flags, and writes once per
action. Nothing lives only in memory, so a restarted or newly elected
controller continues where the last one stopped. With `dry_run` decisions are logged and recorded
(dry_run=true) but no flag changes and nothing is notified.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from control.checks import check_flag
from control.decisions import (
    DEFAULT_ALPHA,
    GUARDED_STATES,
    JUDGED_STATES,
    Action,
    ActionKind,
    Verdict,
    decide,
    max_gap_s,
)
from control.metrics import MetricSource
from control.notify import Notifier
from control.stages import STAGE_ACTIONS, current_stage_started_at
from control.store import ControlStore, DecisionRecord, Lease, VerdictRecord
from flags.client import Flag, FlagsClient, FlagsError, FlagsUnavailable, VersionConflict

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    """What one tick decided for one flag and whether it was carried out."""

    flag: str
    action: Action
    verdicts: tuple[Verdict, ...]
    applied: bool


class Controller:
    """The rollout controller; `tick()` is one evaluation, `run()` ticks until stopped."""

    def __init__(
        self,
        *,
        flags: FlagsClient,
        source: MetricSource,
        store: ControlStore,
        holder: str,
        notifier: Notifier | None = None,
        interval_s: float = 1.0,
        lease_s: float = 15.0,
        dry_run: bool = False,
        alpha: float = DEFAULT_ALPHA,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.flags = flags
        self.source = source
        self.store = store
        self.holder = holder
        self.notifier = notifier
        self.interval_s = interval_s
        self.lease_s = lease_s
        self.dry_run = dry_run
        self.alpha = alpha
        self._clock = clock or (lambda: datetime.now(UTC))
        self.max_gap_s = max_gap_s(interval_s)
        #: Whether the last tick held the lease; the embedded scraper runs only on the leader.
        self.is_leader = False
        self._last_check: dict[str, datetime] = {}
        #: The lease this tick runs under; every write is fenced by it.
        self._lease: Lease | None = None
        #: A write is sent only while the lease has this long left, so it lands before another can lead.
        self.write_margin_s = lease_s / 3

    def run(self, stop: threading.Event) -> None:
        """Tick every interval until `stop` is set, then give the lease up."""
        try:
            while not stop.is_set():
                started = self._clock()
                try:
                    self.tick()
                except Exception:
                    # The daemon must survive one bad tick (flag service restarting,
                    # database locked); the next tick starts from stored state.
                    logger.exception("evaluation failed")
                elapsed = (self._clock() - started).total_seconds()
                stop.wait(max(0.0, self.interval_s - elapsed))
        finally:
            self.is_leader = False
            self.store.release_lease(self.holder)

    def tick(self) -> list[Decision]:
        """Evaluate every flag once if this controller holds the lease; return the decisions."""
        leader = self.store.acquire_lease(self.holder, lease_s=self.lease_s)
        if leader != self.is_leader:
            logger.info(
                "%s: %s", self.holder, "now leading" if leader else "standby: another controller leads"
            )
        self.is_leader = leader
        lease = self.store.lease(self.holder) if leader else None
        if lease is None:
            return []
        self._lease = lease
        try:
            flags = self.flags.list_flags()
        except (FlagsUnavailable, FlagsError) as exc:
            logger.warning("cannot read flags: %s", exc)
            return []
        decisions = []
        for flag in flags:
            if flag.state not in JUDGED_STATES:
                continue
            try:
                decisions.append(self._evaluate(flag))
            except (FlagsUnavailable, FlagsError) as exc:
                logger.warning("flag %s: flag service error: %s", flag.key, exc)
        self.store.mark_evaluation(self.holder)
        return decisions

    def _evaluate(self, flag: Flag) -> Decision:
        now = self._check_time(flag.key)
        if now is None:
            return Decision(
                flag.key, Action(ActionKind.HOLD, "no new scrape since the last check"), (), False
            )
        stage_started = (
            self._stage_started_at(flag) if flag.enabled and flag.state in GUARDED_STATES else None
        )
        if stage_started is not None and stage_started > now:
            return Decision(flag.key, Action(ActionKind.HOLD, "no scrape since the stage started"), (), False)
        verdicts = check_flag(flag, self.source, now=now, since=stage_started, alpha=self.alpha)
        if not self._still_leading():
            # Reading the metrics outlasted the lease (a slow Prometheus) or another controller took
            # it meanwhile: this tick's reading is not recorded, let alone acted on.
            logger.warning("flag %s: the lease of this tick was lost while reading metrics", flag.key)
            return Decision(flag.key, Action(ActionKind.HOLD, "lease lost during the check"), (), False)
        self._last_check[flag.key] = now
        self.store.record_verdicts([_record(flag.key, now, flag, v) for v in verdicts])
        since = now - timedelta(seconds=flag.stage_hold_s + 2 * self.max_gap_s)
        if stage_started is not None:
            since = max(since, stage_started)
        history = self.store.verdicts(flag.key, since=since, until=now)
        action = decide(flag, history, now=now, stage_started_at=stage_started, max_gap_s=self.max_gap_s)
        if action.kind is ActionKind.NOOP:
            logger.debug("flag %s: noop: %s", flag.key, action.reason)
            return Decision(flag.key, action, tuple(verdicts), applied=False)
        applied = False
        if action.kind in (ActionKind.PROMOTE, ActionKind.ROLLBACK) and not self.dry_run:
            applied = self._apply(flag, action)
            if not applied:
                return Decision(flag.key, action, tuple(verdicts), applied=False)
        self.store.record_decision(
            DecisionRecord(
                time=now,
                flag=flag.key,
                action=action.kind.value,
                reason=action.reason,
                dry_run=self.dry_run,
                rollout=action.rollout if action.kind is ActionKind.PROMOTE else flag.rollout,
                holder=self.holder,
            )
        )
        log = logger.warning if action.kind is ActionKind.ROLLBACK else logger.info
        log(
            "%sflag %s at %d%%: %s: %s",
            "[dry run] " if self.dry_run else "",
            flag.key,
            flag.rollout,
            action.kind.value,
            action.reason,
        )
        if applied and self.notifier is not None and self.notifier.enabled:
            self.notifier.notify(_event(flag, action, now))
        return Decision(flag.key, action, tuple(verdicts), applied=applied)

    def _check_time(self, key: str) -> datetime | None:
        """The instant to judge `key` at: the newest scrape (embedded) or now; None when there is nothing new.

        Judging at the newest scrape, not the wall clock, makes every check
        reproducible from the store (`control.backtest` replays these instants).
        """
        now = self._clock()
        data = self.source.data_time()
        if data is None:
            return now
        if (now - data).total_seconds() > self.max_gap_s:
            return None
        last = self._last_check.get(key)
        return None if last is not None and data <= last else data

    def _apply(self, flag: Flag, action: Action) -> bool:
        # Fenced by the lease the tick started under, never renewed here: a tick that outlasted
        # it (a slow metric source) or lost it to another controller must not act on what it read.
        if not self._still_leading():
            logger.warning(
                "flag %s: the lease of this tick is lost or about to expire; %s skipped",
                flag.key,
                action.kind.value,
            )
            return False
        try:
            if action.kind is ActionKind.ROLLBACK:
                self.flags.kill(flag.key, reason=action.reason)
            elif action.rollout is not None and action.rollout != flag.rollout:
                self.flags.set_rollout(flag.key, action.rollout, reason=action.reason, version=flag.version)
            else:
                self.flags.update_flag(
                    flag.key, {"state": "complete"}, version=flag.version, reason=action.reason
                )
        except VersionConflict:
            # Someone changed the flag since we read it; the next tick decides on the new version.
            logger.info("flag %s changed meanwhile; %s deferred", flag.key, action.kind.value)
            return False
        return True

    def _still_leading(self) -> bool:
        """Whether the lease this tick started under still holds, with time left for a write to land."""
        return self._lease is not None and self.store.holds_lease(self._lease, margin_s=self.write_margin_s)

    def _stage_started_at(self, flag: Flag) -> datetime | None:
        """When the current stage began (`control.stages`): the flag's stamp and this store's actions."""
        return current_stage_started_at(flag, self.store.last_action_time(flag.key, STAGE_ACTIONS))


def _record(key: str, now: datetime, flag: Flag, verdict: Verdict) -> VerdictRecord:
    guardrail = next((g for g in flag.guardrails if g.name == verdict.guardrail), None)
    return VerdictRecord(
        time=now,
        flag=key,
        guardrail=verdict.guardrail,
        verdict=verdict.verdict,
        value=verdict.value,
        threshold=verdict.threshold,
        samples=verdict.samples,
        metric=guardrail.metric if guardrail else "",
        path=guardrail.path if guardrail else None,
        detail=verdict.detail,
    )


def _event(flag: Flag, action: Action, now: datetime) -> dict[str, object]:
    kind = "complete" if action.kind is ActionKind.PROMOTE and action.complete else action.kind.value
    return {
        "type": "rollguard.decision",
        "action": kind,
        "flag": flag.key,
        "reason": action.reason,
        "guardrail": action.guardrail,
        "rollout_before": flag.rollout,
        "rollout": action.rollout if action.kind is ActionKind.PROMOTE else flag.rollout,
        "time": now.isoformat(),
        "actor": "controller",
        "dry_run": False,
    }
