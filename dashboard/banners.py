"""Banners every page may show: a source is down, the controller's status, a breach.

Pages call these; the breach banner's one-click kill goes through
`actions.kill` like any other write.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import streamlit as st

from control import ControllerStatus
from dashboard import actions, data, session
from dashboard.health import Judged, breaches, describe
from dashboard.settings import DashboardSettings
from flags.client import Flag


def source_down(error: data.SourceDown) -> None:
    """Say plainly which source is down; the rest of the page keeps working."""
    if error.source == "flag service":
        st.error(
            f"**The flag service is unreachable or refused the dashboard.** {error.message}. "
            "Flags cannot be shown or changed until it answers; this page retries on its own.",
            icon=":material/cloud_off:",
        )
    else:
        st.warning(
            f"**The metric source is unavailable.** {error.message}. "
            "Charts and guardrail checks are missing until it answers.",
            icon=":material/monitoring:",
        )


def controller_status(settings: DashboardSettings) -> ControllerStatus | None:
    """Show whether a controller is running; return its status (None when unknown)."""
    try:
        status = data.controller_status(settings)
    except data.SourceDown as error:
        source_down(error)
        return None
    if status is None or not status.is_live:
        last = _ago(status.last_evaluation_at) if status and status.last_evaluation_at else "never"
        st.warning(
            f"**No controller is running** (last evaluation: {last}). Nothing rolls a flag back "
            "automatically: watch the guardrails and use the kill switch.",
            icon=":material/pause_circle:",
        )
    else:
        st.info(
            f"Controller **{status.holder}** is leader since {_clock(status.acquired_at)}; "
            f"last evaluation {_ago(status.last_evaluation_at)}.",
            icon=":material/smart_toy:",
        )
    return status


def breach(flag: Flag, checks: Sequence[Judged], *, controller_live: bool) -> None:
    """A prominent banner for a breached guardrail, with a one-click kill."""
    failed = breaches(checks)
    if not failed or not flag.enabled:
        return
    settings = session.settings()
    lines = "\n".join(f"- {describe(c, flag.guardrails)}" for c in failed)
    urgency = (
        "The controller should roll it back shortly."
        if controller_live
        else "**No controller is running: nobody else will turn it off.**"
    )
    with st.container(border=True):
        st.error(
            f"**Guardrail breached on `{flag.key}`** at {flag.rollout}% rollout.\n\n{lines}\n\n{urgency}",
            icon=":material/e911_emergency:",
        )
        reason = "guardrail breached: " + "; ".join(describe(c, flag.guardrails) for c in failed)
        clicked = st.button(
            f"Kill {flag.key} now",
            key=f"breach_kill_{flag.key}",
            type="primary",
            disabled=not settings.can_write,
            help=None if settings.can_write else "Needs the admin token (ROLLGUARD_ADMIN_TOKEN).",
        )
    if clicked:
        session.remember(actions.kill(data.client_for(settings), flag, reason=reason))
        # The banner usually sits in an auto-refreshing fragment; the whole page must show the kill.
        st.rerun(scope="app")


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _clock(moment: datetime | None) -> str:
    return _utc(moment).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "unknown"


def _ago(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    seconds = int((data.now() - _utc(moment)).total_seconds())
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return _clock(moment)
