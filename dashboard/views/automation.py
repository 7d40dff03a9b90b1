"""Automation: whether a controller runs, its recent decisions, and manual overrides per flag."""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from dashboard import actions, banners, data, session
from flags.client import Flag

settings = session.settings()
st.title("Automation")
session.show_outcome()


def _pause(flag: Flag) -> None:
    session.remember(actions.pause_automation(data.client_for(settings), flag))


def _resume(flag: Flag) -> None:
    session.remember(actions.resume_automation(data.client_for(settings), flag))


@st.fragment(run_every=settings.refresh_s)
def controller() -> None:
    status = banners.controller_status(settings)
    if status is not None:
        cols = st.columns(4)
        cols[0].metric("Leader", status.holder or "none")
        cols[1].metric("Live", "yes" if status.is_live else "no")
        cols[2].metric("Lease expires", f"{status.expires_at:%H:%M:%S}" if status.expires_at else "-")
        last = status.last_evaluation_at
        cols[3].metric("Last evaluation", f"{last:%H:%M:%S}" if last else "never")
    st.subheader("Recent decisions")
    try:
        decisions = data.decisions(settings, since=data.now() - timedelta(hours=24))
    except data.SourceDown as error:
        banners.source_down(error)
        return
    if not decisions:
        st.caption("No decisions in the last 24 hours.")
        return
    # An HTML table wraps long reasons instead of cutting them off.
    st.table(
        [
            {
                "time": f"{d.time:%Y-%m-%d %H:%M:%S}",
                "flag": d.flag,
                "action": d.action,
                "reason": d.reason,
                "dry run": "yes" if d.dry_run else "",
            }
            for d in decisions[:200]
        ],
        hide_index=True,
    )


controller()

st.subheader("Manual override")
st.caption("A paused flag is left alone by the controller until automation is resumed.")
try:
    flags = data.all_flags(settings)
except data.SourceDown as error:
    banners.source_down(error)
    st.stop()
for flag in flags:
    name, state, promote, button = st.columns([3, 2, 2, 2])
    name.markdown(f"**{flag.key}** · {flag.rollout}% · {'on' if flag.enabled else 'killed'}")
    state.markdown(f"state `{flag.state}`")
    promote.markdown(f"auto-promote {'on' if flag.auto_promote else 'off'}")
    if flag.state == "paused":
        button.button(
            "Resume automation",
            key=f"automation_resume_{flag.key}",
            disabled=not settings.can_write,
            on_click=_resume,
            args=(flag,),
        )
    else:
        button.button(
            "Pause automation",
            key=f"automation_pause_{flag.key}",
            disabled=not settings.can_write or flag.state in ("complete", "rolled_back"),
            on_click=_pause,
            args=(flag,),
        )
