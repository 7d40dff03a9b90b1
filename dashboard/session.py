"""Per-session state shared by the pages: settings, the last action's outcome.

`app.py` stores the settings once per run; pages and the control callbacks read
them here and leave the outcome of an action for the next run to show.
"""

from __future__ import annotations

import streamlit as st

from dashboard.actions import Outcome
from dashboard.data import forget_flags
from dashboard.settings import DashboardSettings

_SETTINGS = "rollguard_settings"
_OUTCOMES = "rollguard_outcomes"


def use_settings(settings: DashboardSettings) -> None:
    st.session_state[_SETTINGS] = settings


def settings() -> DashboardSettings:
    """The settings `app.py` read for this run."""
    found: DashboardSettings = st.session_state[_SETTINGS]
    return found


def remember(outcome: Outcome) -> None:
    """Keep the outcome of the operator's last action and drop cached flag data.

    The cache is dropped on failures too: a 409 means the page showed an old version.
    """
    st.session_state[_OUTCOMES] = outcome
    forget_flags()


def show_outcome() -> None:
    """Show the outcome of the last action until the next one replaces it."""
    outcome: Outcome | None = st.session_state.get(_OUTCOMES)
    if outcome is None:
        return
    if outcome.ok:
        st.success(outcome.message, icon=":material/check_circle:")
    else:
        st.error(outcome.message, icon=":material/block:")
