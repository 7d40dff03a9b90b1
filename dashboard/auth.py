"""The optional login in front of every page, called by `app.py`.

Two ways, whichever is configured:

- single sign-on: with an `[auth]` section in the Streamlit secrets, a session
  must log in through the identity provider (Streamlit's `st.login`, OIDC) and
  acts under its email address;
- shared secret: when `ROLLGUARD_DASHBOARD_PASSWORD` is set, a session must
  enter it once.

docs/dashboard.md describes both and the reverse-proxy alternative.
"""

from __future__ import annotations

import hmac

import streamlit as st

_PASSED = "rollguard_logged_in"


def single_sign_on() -> str | None:
    """Return the logged-in user's email (or name); otherwise draw the login button and return None."""
    if st.user.is_logged_in:
        st.sidebar.button("Log out", on_click=st.logout, icon=":material/logout:")
        return str(st.user.get("email") or st.user.get("name") or "unknown")
    st.title("Rollguard")
    st.write("Log in with your organisation's account to see and steer rollouts.")
    st.button("Log in", type="primary", on_click=st.login, icon=":material/login:")
    return None


def password_gate(password: str | None) -> bool:
    """Return True when this session may see the dashboard; otherwise draw the password form."""
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
