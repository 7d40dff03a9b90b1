"""Audit log: every change to every flag, filtered by flag, actor, action and time."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import streamlit as st

from dashboard import banners, data, session
from dashboard.audit import event_rows, matches

settings = session.settings()
st.title("Audit log")
session.show_outcome()

try:
    keys = [f.key for f in data.all_flags(settings)]
except data.SourceDown as error:
    banners.source_down(error)
    st.stop()

with st.container(border=True):
    cols = [*st.columns(3), *st.columns(3)]
    flag_key = cols[0].selectbox("Flag", ["(all)", *keys], key="audit_flag")
    actor = cols[1].text_input("Actor contains", key="audit_actor")
    action = cols[2].text_input("Action contains", key="audit_action")
    today = datetime.now(UTC).date()
    since_day = cols[3].date_input("From", value=today - timedelta(days=7), key="audit_since")
    until_day = cols[4].date_input("To", value=today, key="audit_until")
    limit = cols[5].number_input("Max", min_value=10, max_value=1000, value=500, step=50, key="audit_limit")


@st.fragment(run_every=settings.refresh_s)
def log() -> None:
    since = datetime.combine(since_day, time.min, UTC)
    until = datetime.combine(until_day, time.max, UTC)
    try:
        events = data.audit_events(
            settings,
            key=None if flag_key == "(all)" else flag_key,
            since=since,
            until=until,
            limit=int(limit),
        )
    except data.SourceDown as error:
        banners.source_down(error)
        return
    shown = [e for e in events if matches(e, actor=actor, action=action)]
    st.caption(f"{len(shown)} of {len(events)} events fetched")
    # An HTML table wraps long reasons and changes; a data grid cut them off or scrolled them away.
    st.table(event_rows(shown), hide_index=True)


log()
