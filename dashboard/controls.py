"""The flag page's control panel: rollout, kill switch, automation, guardrails.

The live guardrails show as a read-only table; their editor is drawn only while
the operator has "Edit guardrails" on (its thirty-odd widgets were half of the
page's elements, which the browser drew at every load). Every widget's callback runs one function of `actions.py` with the flag as the
page showed it (its version guards against overwriting a newer change) and
leaves the outcome for `session.show_outcome`. Forms keep what the operator is
typing through the page's auto-refresh, which only reruns the data fragments.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import streamlit as st

from dashboard import actions, data, session
from dashboard.guardrails import GuardrailRow, validate
from dashboard.health import label, value_text
from flags.client import GUARDRAIL_METRICS, GUARDRAIL_OPS, Flag, FlagsClient, Guardrail
from flags.model import COHORTS as PATHS
from flags.model import GUARDRAIL_KINDS as KINDS

PRESETS = (0, 10, 50, 100)
_CONFIRM = "confirm_switch"
_UNIT_HELP = "Rates as a fraction (0.01 = 1%), latency in seconds, memory in bytes (15000000 = 15 MB)."
_REASON = "switch_reason"


def render(flag: Flag) -> None:
    """Lay out all controls for `flag`."""
    settings = session.settings()
    if not settings.can_write:
        st.info(
            "Read-only: changing flags needs ROLLGUARD_ADMIN_TOKEN and ROLLGUARD_DASHBOARD_READ_ONLY unset.",
            icon=":material/lock:",
        )
    rollout, switch, automation = st.columns([2, 1, 1], border=True)
    with rollout:
        _rollout(flag, disabled=not settings.can_write)
    with switch:
        _kill_switch(flag, disabled=not settings.can_write)
    with automation:
        _automation(flag, disabled=not settings.can_write)
    with st.container(border=True):
        _guardrails(flag, disabled=not settings.can_write)


def _client() -> FlagsClient:
    return data.client_for(session.settings())


# rollout


def _rollout(flag: Flag, *, disabled: bool) -> None:
    st.markdown(f"**Rollout** · now {flag.rollout}%")
    for column, value in zip(st.columns(len(PRESETS)), PRESETS, strict=True):
        column.button(
            f"{value}%",
            key=f"rollout_{value}",
            disabled=disabled or value == flag.rollout,
            on_click=_set_rollout,
            args=(flag, value),
            width="stretch",
        )
    key = f"custom_rollout_{flag.key}_{flag.version}"
    with st.form(f"custom_rollout_{flag.key}", border=False):
        st.number_input("Custom rollout %", min_value=0, max_value=100, value=flag.rollout, step=1, key=key)
        st.form_submit_button(
            "Apply", disabled=disabled, on_click=lambda: _set_rollout(flag, int(st.session_state[key]))
        )


def _set_rollout(flag: Flag, value: int) -> None:
    session.remember(actions.set_rollout(_client(), flag, value))


# kill switch


def _kill_switch(flag: Flag, *, disabled: bool) -> None:
    word = actions.switch_label(flag)
    detail = {"on": "on for its rollout", "killed": "killed: off for everyone"}.get(word, "never turned on")
    st.markdown(f"**Kill switch** · {detail}")
    verb = "kill" if flag.enabled else "resume"
    if st.session_state.get(_CONFIRM) != (flag.key, verb):
        st.button(
            "Kill…" if flag.enabled else "Turn on…" if flag.state == "draft" else "Resume…",
            key=verb,
            type="primary",
            disabled=disabled,
            on_click=lambda: st.session_state.update({_CONFIRM: (flag.key, verb)}),
        )
        return
    question = (
        f"Turn `{flag.key}` off for everyone?"
        if flag.enabled
        else f"Turn `{flag.key}` on at {flag.rollout}%?"
    )
    with st.form(f"{verb}_{flag.key}"):
        st.warning(question, icon=":material/warning:")
        st.text_input("Reason (required, goes into the audit log)", key=_REASON)
        confirm, cancel = st.columns(2)
        confirm.form_submit_button(
            "Turn off for everyone" if flag.enabled else "Turn on",
            type="primary",
            on_click=_switch,
            args=(flag,),
        )
        cancel.form_submit_button("Cancel", on_click=lambda: st.session_state.pop(_CONFIRM, None))


def _switch(flag: Flag) -> None:
    reason = st.session_state.get(_REASON, "")
    act = actions.kill if flag.enabled else actions.resume
    outcome = act(_client(), flag, reason=reason)
    session.remember(outcome)
    if outcome.ok or outcome.flag is not None:
        # Done, or refused as stale: either way the question no longer matches the flag shown.
        st.session_state.pop(_CONFIRM, None)
        st.session_state.pop(_REASON, None)


# automation


def _automation(flag: Flag, *, disabled: bool) -> None:
    st.markdown(f"**Automation** · state `{flag.state}`")
    key = f"auto_promote_{flag.key}_{flag.version}"
    st.toggle(
        "Auto-promote",
        value=flag.auto_promote,
        key=key,
        disabled=disabled,
        on_change=_toggle_auto_promote,
        args=(flag, key),
        help="Let the controller promote through the stages on its own.",
    )
    if flag.state == "paused":
        st.button(
            "Resume automation",
            key="resume_automation",
            disabled=disabled,
            on_click=_resume_automation,
            args=(flag,),
        )
    else:
        st.button(
            "Pause automation",
            key="pause_automation",
            disabled=disabled or flag.state in ("complete", "rolled_back"),
            on_click=_pause_automation,
            args=(flag,),
            help="Manual override: the controller leaves a paused flag alone.",
        )


def _toggle_auto_promote(flag: Flag, key: str) -> None:
    wanted = bool(st.session_state.get(key, not flag.auto_promote))
    if wanted == flag.auto_promote:
        # A refresh can re-send a toggle's value unchanged; only an operator's flip is a change.
        return
    session.remember(actions.set_auto_promote(_client(), flag, wanted))


def _pause_automation(flag: Flag) -> None:
    session.remember(actions.pause_automation(_client(), flag))


def _resume_automation(flag: Flag) -> None:
    session.remember(actions.resume_automation(_client(), flag))


# guardrails


def _guardrails(flag: Flag, *, disabled: bool) -> None:
    st.markdown(f"**Guardrails** · live in version {flag.version}")
    if flag.guardrails:
        st.table(guardrail_table(flag.guardrails), hide_index=True)
    else:
        st.caption("None: the controller has nothing to judge this flag by.")
    # Open to anyone (reading the editor changes nothing); saving is what read-only disables.
    if st.toggle("Edit guardrails", key=f"edit_guardrails_{flag.key}"):
        _guardrail_editor(flag, disabled=disabled)


def guardrail_table(guardrails: Sequence[Guardrail]) -> list[dict[str, str | int]]:
    """The live guardrails as table rows, thresholds in their units (1%, 200 ms, 15 MB)."""
    return [
        {
            "guardrail": label(g),
            # The value alone: a cell starting with ">" would read as a quote (cells are Markdown).
            "threshold": value_text(g.metric, g.threshold),
            "kind": g.kind,
            "window": f"{g.window_s} s",
            "min samples": g.min_samples,
        }
        for g in guardrails
    ]


def _guardrail_editor(flag: Flag, *, disabled: bool) -> None:
    rows = [GuardrailRow.from_guardrail(g) for g in flag.guardrails]
    blank = GuardrailRow(
        metric="error_rate", op="<=", threshold=0.01, window_s=60, min_samples=20, path="optimized"
    )
    prefix = f"gr_{flag.key}_{flag.version}"
    with st.form(prefix, border=False):
        st.caption(
            "Edit the live guardrails below; tick *remove* to drop one. Nothing changes until you save."
        )
        for index, row in enumerate(rows):
            _row_widgets(f"{prefix}_{index}", row, new=False)
        st.markdown("**Draft: a new guardrail** (not live; tick *add* to include it when you save)")
        _row_widgets(f"{prefix}_{len(rows)}", blank, new=True)
        st.form_submit_button(
            "Save guardrails", disabled=disabled, on_click=_save_guardrails, args=(flag, prefix, len(rows))
        )


def _row_widgets(prefix: str, row: GuardrailRow, *, new: bool) -> None:
    cols = st.columns([3, 2, 2, 2, 2, 2, 2, 2])
    cols[0].selectbox(
        "metric", GUARDRAIL_METRICS, index=GUARDRAIL_METRICS.index(row.metric), key=f"{prefix}_metric"
    )
    cols[1].selectbox("operator", GUARDRAIL_OPS, index=GUARDRAIL_OPS.index(row.op), key=f"{prefix}_op")
    # Bytes in full (15000000), never 1.5e+07; fractions as they are (0.01).
    cols[2].number_input(
        "threshold", value=float(row.threshold), format="%.10g", key=f"{prefix}_threshold", help=_UNIT_HELP
    )
    cols[3].number_input("window s", value=int(row.window_s), step=5, key=f"{prefix}_window")
    cols[4].number_input("min samples", value=int(row.min_samples), step=1, key=f"{prefix}_samples")
    paths = ("", *PATHS)
    cols[5].selectbox("cohort", paths, index=paths.index(row.path or ""), key=f"{prefix}_path")
    cols[6].selectbox("kind", KINDS, index=KINDS.index(row.kind), key=f"{prefix}_kind")
    cols[7].checkbox("add" if new else "remove", key=f"{prefix}_toggle")


def _save_guardrails(flag: Flag, prefix: str, existing: int) -> None:
    state = st.session_state
    rows = []
    for index in range(existing + 1):
        key = f"{prefix}_{index}"
        ticked = bool(state.get(f"{key}_toggle"))
        keep = ticked if index == existing else not ticked
        if not keep:
            continue
        threshold = state.get(f"{key}_threshold")
        rows.append(
            GuardrailRow(
                metric=state[f"{key}_metric"],
                op=state[f"{key}_op"],
                threshold=float(threshold) if threshold is not None else math.nan,
                window_s=int(state[f"{key}_window"]),
                min_samples=int(state[f"{key}_samples"]),
                path=state[f"{key}_path"] or None,
                kind=state[f"{key}_kind"],
            )
        )
    guardrails, errors = validate(rows)
    if errors:
        session.remember(actions.Outcome(False, "Guardrails not saved: " + "; ".join(errors)))
        return
    session.remember(actions.save_guardrails(_client(), flag, guardrails))
