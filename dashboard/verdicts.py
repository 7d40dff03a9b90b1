"""The guardrail verdict timeline: runs of equal verdicts, and where nothing was judged and why.

`views/flag.py` reads the controller's recorded verdicts and the flag's audit
events through `data.py` and draws `timeline` under the metric charts. Pure
values in, a Plotly figure out; the tests and the render benchmark call these
directly. A stretch without verdicts is drawn as "not judged" with its cause
(the flag was killed, was a draft, or no controller was judging it), never as
the verdict before it.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import plotly.graph_objects as go

from control import PastVerdict
from dashboard.charts import MARKER_STYLE, Marker
from flags.client import Event, Flag

VERDICT_COLOURS = {"pass": "#2ca02c", "fail": "#d62728", "no_data": "#b0b0b0"}
NOT_JUDGED_COLOUR = "#e8e8e8"
#: A silence longer than this (or three of the controller's usual intervals) is "not judged".
MIN_SILENCE_S = 30.0


@dataclass(frozen=True)
class Run:
    """Consecutive verdicts of one guardrail that agree, without a silence between them."""

    guardrail: str
    verdict: str
    start: datetime
    end: datetime
    last_value: float | None
    threshold: float | None
    count: int


@dataclass(frozen=True)
class Silence:
    """A stretch of one guardrail's row with no verdict, and why."""

    guardrail: str
    start: datetime
    end: datetime
    reason: str


def silence_s(verdicts: Sequence[PastVerdict]) -> float:
    """How long without a verdict counts as not judged: 3 usual intervals, at least MIN_SILENCE_S."""
    times = sorted(v.time for v in verdicts)
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False) if b > a]
    return max(MIN_SILENCE_S, 3 * statistics.median(gaps)) if gaps else MIN_SILENCE_S


def verdict_runs(verdicts: Iterable[PastVerdict], *, max_gap_s: float | None = None) -> list[Run]:
    """Collapse each guardrail's verdicts into runs of the same outcome, broken by silences."""
    records_all = list(verdicts)
    gap_s = silence_s(records_all) if max_gap_s is None else max_gap_s
    by_guardrail: dict[str, list[PastVerdict]] = {}
    for record in records_all:
        by_guardrail.setdefault(record.guardrail, []).append(record)
    runs: list[Run] = []
    for name, records in sorted(by_guardrail.items()):
        records.sort(key=lambda r: r.time)
        current: Run | None = None
        for record in records:
            silent = current is not None and (record.time - current.end).total_seconds() > gap_s
            if current and current.verdict == record.verdict and not silent:
                current = Run(
                    name,
                    record.verdict,
                    current.start,
                    record.time,
                    record.value,
                    record.threshold,
                    current.count + 1,
                )
                continue
            if current:
                # Adjacent runs meet; a run before a silence ends at its last verdict.
                runs.append(current if silent else _until(current, record.time))
            current = Run(name, record.verdict, record.time, record.time, record.value, record.threshold, 1)
        if current:
            runs.append(current)
    return runs


def _until(run: Run, end: datetime) -> Run:
    return Run(run.guardrail, run.verdict, run.start, end, run.last_value, run.threshold, run.count)


@dataclass(frozen=True)
class Stretch:
    """The verdicts of one stretch of time, condensed so that stretches join into the runs of the whole.

    Its runs break at every silence over MIN_SILENCE_S (no longer silence can count as
    "not judged"); `gaps` are the seconds between its distinct verdict times, which
    decide the silence of the whole range. A day of verdicts caches as a few dozen
    stretches of a handful of runs each, instead of thousands of records.
    """

    runs: tuple[Run, ...]
    first: datetime | None
    last: datetime | None
    gaps: tuple[float, ...]


def condense(verdicts: Iterable[PastVerdict]) -> Stretch:
    """One stretch's verdicts as runs and gaps, ready for `join`."""
    records = list(verdicts)
    times = sorted({v.time for v in records})
    gaps = tuple((b - a).total_seconds() for a, b in zip(times, times[1:], strict=False))
    runs = verdict_runs(records, max_gap_s=MIN_SILENCE_S)
    return Stretch(tuple(runs), times[0] if times else None, times[-1] if times else None, gaps)


def join(stretches: Sequence[Stretch]) -> tuple[list[Run], float]:
    """The runs of consecutive stretches as `verdict_runs` gives them for all their verdicts at once,
    and the silence after which a guardrail counts as not judged (`silence_s` of them all)."""
    bounds = [(s.first, s.last) for s in stretches if s.first is not None and s.last is not None]
    gaps = [gap for s in stretches for gap in s.gaps]
    gaps += [(b[0] - a[1]).total_seconds() for a, b in zip(bounds, bounds[1:], strict=False)]
    positive = [gap for gap in gaps if gap > 0]
    gap_s = max(MIN_SILENCE_S, 3 * statistics.median(positive)) if positive else MIN_SILENCE_S
    by_guardrail: dict[str, list[Run]] = {}
    for stretch in stretches:
        for run in stretch.runs:
            by_guardrail.setdefault(run.guardrail, []).append(run)
    runs: list[Run] = []
    for _name, parts in sorted(by_guardrail.items()):
        runs.extend(_rejoin(parts, gap_s))
    return runs, gap_s


def _rejoin(parts: Sequence[Run], gap_s: float) -> list[Run]:
    """Join one guardrail's runs, oldest first, across the silences shorter than `gap_s`."""
    joined: list[Run] = []
    for run in parts:
        current = joined[-1] if joined else None
        if current is None or (run.start - current.end).total_seconds() > gap_s:
            joined.append(run)
        elif current.verdict == run.verdict:
            joined[-1] = Run(
                run.guardrail,
                run.verdict,
                current.start,
                run.end,
                run.last_value,
                run.threshold,
                current.count + run.count,
            )
        else:
            joined[-1] = _until(current, run.start)
            joined.append(run)
    return joined


@dataclass(frozen=True)
class FlagState:
    """The flag's switch and state from `since` on."""

    since: datetime | None
    enabled: bool
    state: str


def flag_history(flag: Flag, events: Iterable[Event]) -> list[FlagState]:
    """The flag's switch and state over time, from its audit events (any order) and its current state."""
    ordered = sorted(
        (e for e in events if e.after is not None or e.before is not None), key=lambda e: (e.time, e.id)
    )
    if not ordered:
        return [FlagState(None, flag.enabled, flag.state)]
    first = ordered[0].before or ordered[0].after or {}
    history = [FlagState(None, bool(first.get("enabled")), str(first.get("state", flag.state)))]
    for event in ordered:
        after = event.after or {}
        if "enabled" in after or "state" in after:
            history.append(
                FlagState(
                    event.time,
                    bool(after.get("enabled", history[-1].enabled)),
                    str(after.get("state", history[-1].state)),
                )
            )
    return history


def reason_at(history: Sequence[FlagState], moment: datetime) -> str:
    """Why nothing was judged at `moment`: the controller skips killed and draft flags."""
    current = history[0]
    for state in history:
        if state.since is None or state.since <= moment:
            current = state
    if current.state == "draft":
        return "draft"
    if not current.enabled or current.state == "rolled_back":
        return "killed"
    return "no controller"


def silences(
    runs: Sequence[Run],
    guardrails: Iterable[str],
    history: Sequence[FlagState],
    *,
    start: datetime,
    end: datetime,
    max_gap_s: float,
) -> list[Silence]:
    """The stretches of each guardrail's row without a verdict, split where the reason changes."""
    found: list[Silence] = []
    for name in sorted({*guardrails, *(r.guardrail for r in runs)}):
        cursor = start
        for run in sorted((r for r in runs if r.guardrail == name), key=lambda r: r.start):
            if (run.start - cursor).total_seconds() > max_gap_s:
                found.extend(_split(name, cursor, run.start, history))
            cursor = max(cursor, run.end)
        if (end - cursor).total_seconds() > max_gap_s:
            found.extend(_split(name, cursor, end, history))
    return found


def _split(name: str, start: datetime, end: datetime, history: Sequence[FlagState]) -> list[Silence]:
    cuts = [start, *(s.since for s in history if s.since is not None and start < s.since < end), end]
    return [Silence(name, a, b, reason_at(history, a)) for a, b in zip(cuts, cuts[1:], strict=False)]


def timeline(
    runs: Sequence[Run],
    *,
    start: datetime,
    end: datetime,
    quiet: Sequence[Silence] = (),
    markers: Sequence[Marker] = (),
    labels: Mapping[str, str] | None = None,
) -> go.Figure:
    """One row per guardrail, coloured by outcome; silences in light grey, labelled with their reason.

    `labels` shows a row under another text than the guardrail's name (its threshold in MB).
    """
    shown = dict(labels or {})
    runs = [dataclasses.replace(r, guardrail=shown.get(r.guardrail, r.guardrail)) for r in runs]
    quiet = [dataclasses.replace(s, guardrail=shown.get(s.guardrail, s.guardrail)) for s in quiet]
    figure = go.Figure()
    for verdict, colour in VERDICT_COLOURS.items():
        chosen = [r for r in runs if r.verdict == verdict]
        if chosen:
            figure.add_trace(_bars(verdict, chosen, colour))
    for reason in sorted({s.reason for s in quiet}):
        chosen_quiet = [s for s in quiet if s.reason == reason]
        figure.add_trace(
            go.Bar(
                orientation="h",
                y=[s.guardrail for s in chosen_quiet],
                base=[s.start for s in chosen_quiet],
                x=[(s.end - s.start).total_seconds() * 1000 for s in chosen_quiet],
                name=f"not judged: {reason}",
                marker={"color": NOT_JUDGED_COLOUR, "pattern": {"shape": "/", "fgcolor": "#9a9a9a"}},
                hovertemplate=f"not judged: {reason}<extra>%{{y}}</extra>",
            )
        )
    rows = sorted({r.guardrail for r in runs} | {s.guardrail for s in quiet})
    figure.update_layout(
        title={"text": "Guardrail verdicts", "font": {"size": 15}},
        barmode="overlay",
        height=max(180, 90 + 34 * len(rows)),
        margin={"l": 50, "r": 20, "t": 80, "b": 40},
        xaxis={"type": "date", "range": [start, end]},
        yaxis={"automargin": True, "showticklabels": bool(rows)},
        legend={"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"},
    )
    for marker in markers:
        figure.add_vline(
            x=marker.time, line={"color": MARKER_STYLE[marker.kind][0], "width": 1, "dash": "dot"}
        )
    if not rows:
        figure.add_annotation(
            text="no guardrails and no verdicts in this range",
            showarrow=False,
            xref="paper",
            yref="paper",
            x=0.5,
            y=0.5,
        )
    return figure


def _bars(verdict: str, chosen: Sequence[Run], colour: str) -> go.Bar:
    return go.Bar(
        orientation="h",
        y=[r.guardrail for r in chosen],
        base=[r.start for r in chosen],
        # A single verdict still gets a visible sliver of one second.
        x=[max((r.end - r.start).total_seconds(), 1.0) * 1000 for r in chosen],
        name=verdict,
        marker={"color": colour},
        customdata=[[r.count, r.last_value, r.threshold] for r in chosen],
        hovertemplate=(
            f"{verdict}: %{{customdata[0]}} checks<br>last value %{{customdata[1]}}"
            " vs %{customdata[2]}<extra>%{y}</extra>"
        ),
    )
