"""The optional login gate in front of every page, called by `app.py`.

When `ROLLGUARD_DASHBOARD_PASSWORD` is set, a session must enter it once before
any page renders. This is a shared-secret gate for small teams; for single
sign-on use Streamlit's `st.login` (OIDC) or an authenticating reverse proxy,
as docs/dashboard.md describes.
"""

from __future__ import annotations

import hmac

import streamlit as st

_PASSED = "rollguard_logged_in"


def gate(password: str | None) -> bool:
    """Return True when this session may see the dashboard; otherwise draw the login form."""
    if not password or st.session_state.get(_PASSED):
        return True
    st.title("Rollguard")
    with st.form("login"):
        attempt = st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Log in")
    if submitted:
        if hmac.compare_digest(attempt.encode(), password.encode()):
            st.session_state[_PASSED] = True
            st.rerun()
        st.error("Wrong password.")
    return False
