"""Everything the dashboard reads, cached for a few seconds per process.

Pages call these functions and never build clients themselves. Flags and
events come from the flag service's admin API (`FlagsClient`, kept in
`st.cache_resource`); metrics come from the controller's own metric source, and
its last checks, verdicts, decisions and status from its read-only
`ControlHistory`, both opened from the same settings the controller uses. The
dashboard judges no guardrail itself: it shows the controller's verdicts.
Failures surface as `SourceDown`, which the pages turn into a banner.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import streamlit as st
from prometheus_api_client.exceptions import PrometheusApiClientException
from sqlalchemy.exc import SQLAlchemyError

from control import (
    ControlError,
    ControlHistory,
    ControllerStatus,
    ControlSettings,
    DecisionRecord,
    LastCheck,
    MetricSource,
    Point,
    open_source,
    series_window_s,
)
from dashboard import headline
from dashboard import verdicts as verdict_timeline
from dashboard.settings import DashboardSettings
from flags.client import (
    Annotation,
    Event,
    Flag,
    FlagNotFound,
    FlagsClient,
    FlagsError,
    FlagsUnavailable,
)

logger = logging.getLogger(__name__)

FLAGS_TTL_S = 3
METRICS_TTL_S = 5


class SourceDown(Exception):
    """A source the dashboard reads from (flag service or metric source) failed."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source
        self.message = message


# clients


@st.cache_resource(show_spinner=False)
def flags_client(url: str, token: str | None, actor: str) -> FlagsClient:
    """The admin API client for one (url, token, operator); shared by all sessions."""
    # One quick retry: a dashboard should say "down" within a second or two, not hang.
    return FlagsClient(url, token, actor=actor, timeout=3.0, retries=1, backoff_s=0.1)


def client_for(settings: DashboardSettings) -> FlagsClient:
    return flags_client(settings.flags_url, settings.admin_token, settings.actor)


@st.cache_resource(show_spinner=False)
def _control(control_env: tuple[tuple[str, str], ...]) -> tuple[MetricSource, ControlHistory]:
    """The controller's metric source and its history (read-only), opened once per configuration."""
    control_settings = ControlSettings.from_env(dict(control_env))
    history = ControlHistory.from_settings(control_settings)
    return open_source(control_settings, store=history), history


# What a metric source or the controller's history raise when their backend is down or misconfigured;
# requests' errors (Prometheus client) are OSErrors.
_METRIC_ERRORS: tuple[type[BaseException], ...] = (
    ControlError,
    SQLAlchemyError,
    OSError,
    PrometheusApiClientException,
)


# When the metric source just failed, the other reads of the same run fail fast instead of
# each waiting for its own connection timeout.
_RECENT_FAILURE_S = 5.0
_failures: dict[tuple[tuple[str, str], ...], tuple[float, SourceDown]] = {}


def _control_call(settings: DashboardSettings, what: str, call: Any) -> Any:
    failed = _failures.get(settings.control_env)
    if failed and time.monotonic() - failed[0] < _RECENT_FAILURE_S:
        raise failed[1]
    try:
        source, history = _control(settings.control_env)
        result = call(source, history)
    except _METRIC_ERRORS as exc:
        logger.warning("metric source failed reading %s: %s", what, exc)
        down = SourceDown("metric source", f"reading {what} failed: {_first_line(exc)}")
        _failures[settings.control_env] = (time.monotonic(), down)
        raise down from exc
    _failures.pop(settings.control_env, None)
    return result


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _flags_call(settings: DashboardSettings, call: Any) -> Any:
    try:
        return call(client_for(settings))
    except FlagNotFound:
        raise
    except FlagsUnavailable as exc:
        raise SourceDown("flag service", f"no answer from {settings.flags_url}") from exc
    except FlagsError as exc:
        raise SourceDown("flag service", f"{exc.status} {exc.code}: {exc.message}") from exc


# flags and events


@st.cache_data(ttl=FLAGS_TTL_S, show_spinner=False)
def all_flags(settings: DashboardSettings) -> list[Flag]:
    """Every flag, sorted by key."""
    found: list[Flag] = _flags_call(settings, lambda c: c.list_flags())
    return sorted(found, key=lambda f: f.key)


@st.cache_data(ttl=FLAGS_TTL_S, show_spinner=False)
def one_flag(settings: DashboardSettings, key: str) -> Flag:
    """One flag; raises FlagNotFound for an unknown key."""
    found: Flag = _flags_call(settings, lambda c: c.get_flag(key))
    return found


@st.cache_data(ttl=FLAGS_TTL_S, show_spinner=False)
def audit_events(
    settings: DashboardSettings,
    *,
    key: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 200,
) -> list[Event]:
    """Audit events, newest first."""
    found: list[Event] = _flags_call(
        settings, lambda c: c.events(flag=key, since=since, until=until, limit=limit)
    )
    return sorted(found, key=lambda e: (e.time, e.id), reverse=True)


@st.cache_data(ttl=FLAGS_TTL_S, show_spinner=False)
def flag_annotations(settings: DashboardSettings, *, key: str, since: datetime) -> list[Annotation]:
    """The annotations of one flag and those for every flag since `since`, oldest first."""
    found: list[Annotation] = _flags_call(settings, lambda c: c.annotations(flag=key, since=since, limit=500))
    return sorted(found, key=lambda a: (a.time, a.id))


def last_changes(settings: DashboardSettings, keys: Sequence[str]) -> dict[str, Event]:
    """The newest audit event of each flag in `keys`."""
    latest: dict[str, Event] = {}
    for event in audit_events(settings, limit=500):
        if event.flag and event.flag not in latest:
            latest[event.flag] = event
    for key in keys:
        if key not in latest:
            found = audit_events(settings, key=key, limit=1)
            if found:
                latest[key] = found[0]
    return latest


def forget_recent() -> None:
    """Drop every cached read except settled metric chunks: what the next refresh reads again."""
    forget_flags()
    _recent_chunk.clear()
    last_check.clear()
    headline_totals.clear()
    _recent_verdicts.clear()
    decisions.clear()
    controller_status.clear()


def forget_flags() -> None:
    """Drop cached flags and events after a write so the next read shows it."""
    all_flags.clear()
    one_flag.clear()
    audit_events.clear()
    flag_annotations.clear()


# metrics, verdicts, controller


def series(
    settings: DashboardSettings,
    metric: str,
    *,
    fn: str | None,
    path: str | None,
    start: datetime,
    end: datetime,
    step_s: int,
    window_s: int | None = None,
    flag: str | None = None,
) -> list[Point]:
    """Points of one derived metric over [start, end], at multiples of `step_s`.

    `flag` is the flag the chart is about (the impact source splits cohorts by its label).

    Each point covers `window_s` seconds (None: the source's default window).
    The range is read in step-aligned chunks. A chunk whose points can no longer
    change (its end lies further back than a series window plus a late scrape)
    stays cached for an hour, so a refresh of a 24-hour chart recomputes only
    its newest chunk instead of the whole day.
    """
    chunk_s = step_s * max(CHUNK_POINTS, math.ceil(MIN_CHUNK_S / step_s))
    settled_before = now().timestamp() - series_window_s(step_s, window_s) - SETTLE_S
    points: list[Point] = []
    chunk = math.floor(start.timestamp() / chunk_s) * chunk_s
    # Floored so that every call within one step asks for the same (cached) newest chunk.
    end_step = math.floor(end.timestamp() / step_s) * step_s
    while chunk <= end_step:
        last = chunk + chunk_s - step_s
        if last < settled_before:
            found = _settled_chunk(
                settings,
                metric,
                fn=fn,
                path=path,
                flag=flag,
                chunk=chunk,
                last=last,
                step_s=step_s,
                window_s=window_s,
            )
        else:
            found = _recent_chunk(
                settings,
                metric,
                fn=fn,
                path=path,
                flag=flag,
                chunk=chunk,
                last=min(last, end_step),
                step_s=step_s,
                window_s=window_s,
            )
        points.extend(p for p in found if start <= p.time <= end)
        chunk += chunk_s
    return points


CHUNK_POINTS = 120
MIN_CHUNK_S = 3600
SETTLE_S = 30


def _chunk(
    settings: DashboardSettings,
    metric: str,
    fn: str | None,
    path: str | None,
    flag: str | None,
    chunk: float,
    last: float,
    step_s: int,
    window_s: int | None,
) -> list[Point]:
    found: list[Point] = _control_call(
        settings,
        metric,
        lambda source, _history: source.series(
            metric,
            fn=fn,
            path=path,
            flag=flag,
            start=datetime.fromtimestamp(chunk, UTC),
            end=datetime.fromtimestamp(last, UTC),
            step_s=step_s,
            window_s=window_s,
        ),
    )
    return found


@st.cache_data(ttl=3600, max_entries=5000, show_spinner=False)
def _settled_chunk(
    settings: DashboardSettings,
    metric: str,
    *,
    fn: str | None,
    path: str | None,
    flag: str | None,
    chunk: float,
    last: float,
    step_s: int,
    window_s: int | None,
) -> list[Point]:
    # window_s is an argument, hence part of the cache key: each window caches its own chunks.
    return _chunk(settings, metric, fn, path, flag, chunk, last, step_s, window_s)


@st.cache_data(ttl=METRICS_TTL_S, show_spinner=False)
def _recent_chunk(
    settings: DashboardSettings,
    metric: str,
    *,
    fn: str | None,
    path: str | None,
    flag: str | None,
    chunk: float,
    last: float,
    step_s: int,
    window_s: int | None,
) -> list[Point]:
    # window_s is an argument, hence part of the cache key: each window caches its own chunks.
    return _chunk(settings, metric, fn, path, flag, chunk, last, step_s, window_s)


#: How far back the headline looks for each instance's newest scrape.
HEADLINE_LOOKBACK_S = 300


@st.cache_data(ttl=METRICS_TTL_S, show_spinner=False)
def headline_totals(settings: DashboardSettings, fn: str | None) -> dict[tuple[str, str | None], float]:
    """The headline's counters summed over instances, from each one's newest scrape in the store."""
    end = now()
    found: dict[tuple[str, str | None], float] = _control_call(
        settings,
        "the headline",
        lambda _source, history: headline.totals_from_samples(
            history.raw_samples(
                headline.NAMES, start=end - timedelta(seconds=HEADLINE_LOOKBACK_S), end=end, fn=fn
            )
        ),
    )
    return found


@st.cache_data(ttl=METRICS_TTL_S, show_spinner=False)
def last_check(settings: DashboardSettings, flag: Flag) -> LastCheck:
    """The controller's newest verdicts of `flag` while recent, else why it is not judged."""
    found: LastCheck = _control_call(
        settings, f"the last check of {flag.key}", lambda _source, history: history.last_check(flag)
    )
    return found


#: Verdicts are read an hour at a time, so that the hours that have passed stay cached.
VERDICT_CHUNK_S = 3600


def verdict_runs(
    settings: DashboardSettings, key: str, *, since: datetime
) -> tuple[list[verdict_timeline.Run], float]:
    """The controller's verdicts for one flag since `since` as runs of equal outcomes (a day is
    thousands of verdicts), and the silence after which a guardrail counts as not judged.

    Read and condensed an hour at a time: a whole hour that ended over SETTLE_S ago
    stays cached for an hour, so a refresh of a 24-hour page reads only the newest
    hour and the part of an hour at `since`.
    """
    until = now().timestamp()
    stretches = []
    edge = since.timestamp()
    while edge <= until:
        chunk_end = (math.floor(edge / VERDICT_CHUNK_S) + 1) * VERDICT_CHUNK_S
        whole = edge % VERDICT_CHUNK_S == 0
        read = _settled_verdicts if whole and chunk_end < until - SETTLE_S else _recent_verdicts
        stretches.append(read(settings, key, start=edge, end=chunk_end))
        edge = chunk_end
    return verdict_timeline.join(stretches)


def _verdict_stretch(
    settings: DashboardSettings, key: str, start: float, end: float
) -> verdict_timeline.Stretch:
    # Stored times are whole microseconds, so [start, end - 1 us] leaves nothing between two stretches.
    found: verdict_timeline.Stretch = _control_call(
        settings,
        "verdicts",
        lambda _source, history: verdict_timeline.condense(
            history.verdicts(
                key,
                since=datetime.fromtimestamp(start, UTC),
                until=datetime.fromtimestamp(end, UTC) - timedelta(microseconds=1),
            )
        ),
    )
    return found


@st.cache_data(ttl=3600, max_entries=5000, show_spinner=False)
def _settled_verdicts(
    settings: DashboardSettings, key: str, *, start: float, end: float
) -> verdict_timeline.Stretch:
    return _verdict_stretch(settings, key, start, end)


@st.cache_data(ttl=METRICS_TTL_S, show_spinner=False)
def _recent_verdicts(
    settings: DashboardSettings, key: str, *, start: float, end: float
) -> verdict_timeline.Stretch:
    return _verdict_stretch(settings, key, start, end)


@st.cache_data(ttl=METRICS_TTL_S, show_spinner=False)
def decisions(
    settings: DashboardSettings, key: str | None = None, *, since: datetime | None = None
) -> list[DecisionRecord]:
    """The controller's decisions, newest first."""
    found: list[DecisionRecord] = _control_call(
        settings, "decisions", lambda _source, history: history.decisions(key, since=since)
    )
    return sorted(found, key=lambda d: d.time, reverse=True)


@st.cache_data(ttl=METRICS_TTL_S, show_spinner=False)
def controller_status(settings: DashboardSettings) -> ControllerStatus | None:
    """Who holds the controller lease and when it last evaluated, or None if nobody ever did."""
    found: ControllerStatus | None = _control_call(
        settings, "controller status", lambda _source, history: history.controller_status()
    )
    return found


def now() -> datetime:
    return datetime.now(UTC)


def window_end(step_s: int) -> datetime:
    """Now, floored to `step_s`: reruns within one step share cached series, and no point lies ahead."""
    floored = int(now().timestamp()) // step_s * step_s
    return datetime.fromtimestamp(floored, UTC)
