"""The Streamlit entry point that `rollguard dashboard` runs.

Reads the configuration once per run, applies the optional login gate, and
hands over to the page the operator picked. The pages live in `views/`: a
`pages/` folder would also be served by Streamlit on its own, skipping this script.
"""

from __future__ import annotations

import logging
import os

import streamlit as st
from streamlit.errors import StreamlitSecretNotFoundError

from dashboard import auth, session
from dashboard.settings import DashboardSettings

PAGES = (
    ("views/overview.py", "Overview", ":material/traffic:"),
    ("views/flag.py", "Flag", ":material/tune:"),
    ("views/automation.py", "Automation", ":material/smart_toy:"),
    ("views/audit.py", "Audit log", ":material/history:"),
)


def _secrets() -> dict[str, object]:
    try:
        return dict(st.secrets)
    except (FileNotFoundError, StreamlitSecretNotFoundError):
        return {}


def main() -> None:
    """Configure, gate, navigate."""
    st.set_page_config(page_title="Rollguard", page_icon=":material/traffic:", layout="wide")
    secrets = _secrets()
    try:
        settings = DashboardSettings.from_env(os.environ, secrets)
    except ValueError as exc:
        st.error(f"Configuration: {exc}")
        return
    if "auth" in secrets:
        user = auth.single_sign_on()
        if user is None:
            return
        # Each signed-in operator appears in the audit log under their own name.
        settings = settings.model_copy(update={"operator": user})
    elif not auth.password_gate(settings.password):
        return
    session.use_settings(settings)
    pages = [
        st.Page(path, title=title, icon=icon, default=index == 0)
        for index, (path, title, icon) in enumerate(PAGES)
    ]
    navigation = st.navigation(pages)
    st.sidebar.caption(f"Flag service: {settings.flags_url}")
    st.sidebar.caption(f"Acting as `{settings.actor}`" if settings.can_write else "Read-only")
    navigation.run()


if not logging.getLogger().handlers:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # One line per admin API request at every refresh would drown the dashboard's own log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
main()
