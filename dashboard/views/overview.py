"""Overview: every flag with its state, rollout, stage, health and last change."""

from __future__ import annotations

import streamlit as st

from dashboard import actions, banners, data, session
from dashboard.status import flag_rows

settings = session.settings()
st.title("Rollguard flags")
session.show_outcome()


@st.fragment(run_every=settings.refresh_s)
def overview() -> None:
    status = banners.controller_status(settings)
    controller_live = bool(status and status.is_live)
    try:
        flags = data.all_flags(settings)
    except data.SourceDown as error:
        banners.source_down(error)
        return
    if not flags:
        st.info("No flags yet. Create one with `rollguard flags create KEY`.")
        return
    rows, metric_error = flag_rows(settings, flags)
    if metric_error:
        banners.source_down(metric_error)
    for row in rows:
        banners.breach(row.flag, row.checks, controller_live=controller_live)
    # An HTML table wraps long text (the last change); a data grid cut it off at 1280 px.
    st.table(
        [
            {
                "flag": row.flag.key,
                "health": row.health.label,
                "state": row.flag.state,
                "enabled": actions.switch_label(row.flag),
                "rollout": f"{row.flag.rollout}%",
                "stage": row.stage,
                "auto-promote": "yes" if row.flag.auto_promote else "no",
                "last change": row.change_text,
            }
            for row in rows
        ],
        hide_index=True,
    )
    st.caption(f"Refreshes every {settings.refresh_s:g}s.")
    columns = st.columns(min(len(rows), 4))
    for index, row in enumerate(rows):
        columns[index % len(columns)].page_link(
            "views/flag.py",
            label=f"Open {row.flag.key}",
            icon=":material/tune:",
            query_params={"flag": row.flag.key},
        )


overview()
