"""Flag page: one flag's state, its controls, its metrics and guardrail verdicts."""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from dashboard import (
    actions,
    banners,
    charts,
    controls,
    data,
    headline,
    live_checks,
    session,
    status,
    verdicts,
)
from dashboard.health import Health, labels
from dashboard.plots import (
    RANGE_SLUGS,
    RANGES,
    RESOLUTIONS,
    default_range,
    metrics_figure,
    step_for,
    story_start,
)
from flags.client import Flag, FlagNotFound

settings = session.settings()

try:
    keys = [f.key for f in data.all_flags(settings)]
except data.SourceDown as error:
    st.title("Flag")
    banners.source_down(error)
    st.stop()
if not keys:
    st.title("Flag")
    st.info("No flags yet.")
    st.stop()

wanted = st.query_params.get("flag")
if st.session_state.get("flag_key") not in keys or (wanted in keys and wanted != st.session_state.flag_key):
    st.session_state.flag_key = wanted if wanted in keys else keys[0]
key = st.selectbox("Flag", keys, key="flag_key")
st.query_params["flag"] = key


@st.fragment(run_every=settings.refresh_s)
def flag_view() -> None:
    """Header, controls and charts from one read of the flag, so all show the same version."""
    session.show_outcome()
    try:
        flag = data.one_flag(settings, key)
    except FlagNotFound:
        st.error(f"Flag `{key}` no longer exists.")
        return
    except data.SourceDown as error:
        banners.source_down(error)
        return
    header(flag)
    headline_strip(flag)
    controls.render(flag)
    metrics(flag)


def header(flag: Flag) -> None:
    st.title(flag.key)
    if flag.description:
        st.caption(flag.description)
    # Two rows of three: six in a row cut `rolled_back` short on a 1280 px screen.
    top, bottom = st.columns(3), st.columns(3)
    top[0].metric("Kill switch", actions.switch_label(flag))
    top[1].metric("Rollout", f"{flag.rollout}%")
    top[2].metric("Stage", status.FlagRow(flag, Health.UNKNOWN, (), None).stage)
    bottom[0].metric("State", flag.state)
    bottom[1].metric("Auto-promote", "on" if flag.auto_promote else "off")
    bottom[2].metric("Version", flag.version)
    live = banners.controller_status(settings)
    controller_live = bool(live and live.is_live)
    try:
        health, check = status.flag_health(settings, flag)
    except data.SourceDown as error:
        banners.source_down(error)
        return
    banners.breach(flag, check.verdicts, controller_live=controller_live)
    live_checks.render(flag, health, check, live, now=data.now())


def headline_strip(flag: Flag) -> None:
    try:
        totals = data.headline_totals(settings, flag.payload.get("fn"))
    except data.SourceDown as error:
        banners.source_down(error)
        return
    if not totals:
        st.caption("Headline: no scrape of the app's /metrics in the last 5 minutes.")
        return
    figures = headline.headline(totals, flag)
    st.markdown("**Results so far**")
    cols = [*st.columns(4), *st.columns(3)]
    cols[0].metric(
        "Backend calls saved",
        headline.count(figures.backend_saved),
        help=f"Against the direct path: {figures.calls_optimized:,} optimized calls made "
        f"{figures.backend_optimized:,} backend calls.",
    )
    cols[1].metric("Call reduction", headline.percent(figures.call_reduction), help="Optimized path.")
    cols[2].metric(
        "eta",
        headline.ratio(figures.eta),
        help="Live efficiency of the optimized path: the share of the ideal call reduction it achieves "
        "(1.0 is ideal; n/a until the app exports optimizer_ideal_fetches_total).",
    )
    cols[3].metric("Hit rate", headline.percent(figures.hit_rate))
    budget = figures.cache_budget_bytes
    cols[4].metric(
        f"Cache of {headline.megabytes(budget)}" if budget else "Cache",
        headline.megabytes(figures.cache_bytes),
        help="Budget: the payload's max_bytes, else the tightest cache_bytes guardrail."
        + ("" if budget else " Neither is set."),
    )
    for column, path in zip(cols[5:], headline.PATHS, strict=True):
        column.metric(f"Errors {path}", headline.percent(figures.error_rate[path]))
    st.caption(
        "Totals since the app's instances started, summed over their newest scrape: what their /metrics show."
    )


def _initial_range() -> str:
    """The range in the URL, or the smallest that shows the flag's current story."""
    asked = RANGE_SLUGS.get(st.query_params.get("range", ""))
    if asked:
        return asked
    try:
        recent = data.audit_events(settings, key=key, limit=200)
    except data.SourceDown:
        recent = []
    return default_range(story_start([e.time for e in recent]), data.now())


def metrics(flag: Flag) -> None:
    st.subheader("Metrics")
    pick_range, pick_resolution = st.columns(2)
    if st.session_state.get("time_range") not in RANGES:
        st.session_state.time_range = _initial_range()
    range_label = pick_range.selectbox("Time range", list(RANGES), key="time_range")
    st.query_params["range"] = {label: slug for slug, label in RANGE_SLUGS.items()}[range_label]
    resolution = pick_resolution.selectbox("Resolution", list(RESOLUTIONS), key="resolution")
    span_s = RANGES[range_label]
    step_s = step_for(span_s, RESOLUTIONS[resolution])
    end = data.window_end(step_s)
    start = end - timedelta(seconds=span_s)
    # Verdicts and changes up to this moment, not just to the last whole step.
    shown_until = data.now()
    try:
        events = data.audit_events(settings, key=key, since=start, limit=1000)
    except data.SourceDown as error:
        banners.source_down(error)
        events = []
    try:
        notes = data.flag_annotations(settings, key=key, since=start)
    except data.SourceDown as error:
        banners.source_down(error)
        notes = []
    markers = sorted(
        [*charts.markers_from_events(events), *charts.markers_from_annotations(notes)], key=lambda m: m.time
    )
    # The verdict timeline is read first (its past hours are cached) and sent to its place under
    # the metric panels: the browser loads Plotly's code while the series are still being read.
    metrics_place = st.container()
    try:
        runs, silence_s = data.verdict_runs(settings, key, since=start)
    except data.SourceDown as error:
        banners.source_down(error)
        return
    quiet = verdicts.silences(
        runs,
        [g.name for g in flag.guardrails],
        verdicts.flag_history(flag, events),
        start=start,
        end=shown_until,
        max_gap_s=silence_s,
    )
    st.plotly_chart(
        verdicts.timeline(
            runs, start=start, end=shown_until, quiet=quiet, markers=markers, labels=labels(flag.guardrails)
        ),
        key="verdicts",
        config={"displaylogo": False},
    )
    try:
        figure = metrics_figure(settings, flag, start=start, end=shown_until, step_s=step_s, markers=markers)
    except data.SourceDown as error:
        with metrics_place:
            banners.source_down(error)
        return
    metrics_place.plotly_chart(figure, key="metrics", config={"displaylogo": False})
    st.caption(
        f"{range_label} at {step_s}s steps · flag version {flag.version} · updated {data.now():%H:%M:%S} UTC · "
        f"refreshes every {settings.refresh_s:g}s",
        help="Only this page's content refreshes: what you type in the controls is kept.",
    )


flag_view()
