"""The flag page's live checks: the controller's last verdict of each guardrail and its age, or why none.

The dashboard judges no guardrail: `data.last_check` reads the controller's
newest check of the flag (`control.LastCheck`), and `lines` words it for the
operator, one line per guardrail, with how long ago it was judged; when the
check is missing or old, "not judged" and why (no controller running, the flag
is killed or a draft, no fresh metrics). Pure text here; `render` draws it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from control import ControllerStatus, LastCheck
from dashboard.health import Health, describe, label
from flags.client import Flag


def lines(
    flag: Flag, health: Health, check: LastCheck, status: ControllerStatus | None, *, now: datetime
) -> list[str]:
    """The panel's lines: the health and the check's age, then one line per guardrail, then the notes."""
    if not check.judged:
        # The badge says "not judged" itself unless the flag is off.
        head = f"Health: {health.label}{':' if health is Health.NOT_JUDGED else ' · not judged:'} "
        head += str(check.not_judged)
        if check.not_judged == "no controller running" and status is not None:
            head += f" (last evaluation {age(status.last_evaluation_at, now)})"
        if check.judged_at is not None:
            head += f" · last check {age(check.judged_at, now)}"
        return [head, *check.notes]
    by_name = {v.guardrail: v for v in check.verdicts}
    rows = []
    for guardrail in flag.guardrails:
        verdict = by_name.pop(guardrail.name, None)
        if verdict is None:
            rows.append(f"{label(guardrail)} → not judged yet (added after this check)")
            continue
        why = f" ({verdict.detail})" if verdict.detail else ""
        rows.append(f"{describe(verdict, flag.guardrails)} → {verdict.verdict}{why}")
    # A guardrail removed since the check: its verdict is the controller's, shown under its name.
    rows += [f"{describe(v)} → {v.verdict} (guardrail since removed)" for v in by_name.values()]
    head = f"Health: {health.label} · judged {age(check.judged_at, now)} by the controller"
    return [head, *rows, *check.notes]


def age(moment: datetime | None, now: datetime) -> str:
    """How long before `now` a moment was: `3 s ago`, `4 min ago`, `2 h ago`, or `never`."""
    if moment is None:
        return "never"
    seconds = max(0, int((now - _utc(moment)).total_seconds()))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    if seconds < 2 * 86_400:
        return f"{seconds // 3600} h ago"
    return f"at {_utc(moment):%Y-%m-%d %H:%M} UTC"


def render(
    flag: Flag, health: Health, check: LastCheck, status: ControllerStatus | None, *, now: datetime
) -> None:
    """The live checks under the flag's header, one line each."""
    st.caption("  \n".join(lines(flag, health, check, status, now=now)))


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
