"""The Streamlit page `dashboard_floor.py` serves: a title, the flag page's metric panels or not, a caption.

`ROLLGUARD_FLOOR_CHARTS` picks what it draws from the store at
`ROLLGUARD_CONTROL_DATABASE_URL` (24 hours at the flag page's automatic step):
`none`, `plotly` (the five panels as the flag page draws them, one figure) or
`vega` (the same lines as five Vega-Lite charts, `st.altair_chart`). The
series are read once per server, in its first run (not for `none`).
"""

from __future__ import annotations

import os
from datetime import timedelta

import streamlit as st

from control import ControlHistory, ControlSettings, open_source
from dashboard import charts
from dashboard.plots import PANELS, step_for

FN = "get_all_exam_attempts"
DAY_S = 86_400


@st.cache_resource
def _rows() -> tuple[object, object, int, list[charts.Row]]:
    settings = ControlSettings.from_env(dict(os.environ))
    history = ControlHistory.from_settings(settings)
    source = open_source(settings, store=history)
    end = history.newest_sample_time()
    assert end is not None, "the store holds no samples"
    start = end - timedelta(seconds=DAY_S)
    step_s = step_for(DAY_S, None)
    rows = [
        charts.Row(
            panel.title,
            {
                name: source.series(metric, fn=FN, path=path, start=start, end=end, step_s=step_s)
                for name, metric, path in panel.lines
            },
            unit=panel.unit,
        )
        for panel in PANELS
    ]
    return start, end, step_s, rows


def _vega(rows: list[charts.Row]) -> None:
    import altair as alt
    import pandas as pd  # type: ignore[import-untyped]

    for row in rows:
        frame = pd.DataFrame(
            [
                {"time": p.time, "value": p.value, "line": name}
                for name, points in row.lines.items()
                for p in points
            ]
        )
        chart = alt.Chart(frame, title=row.title, height=210).mark_line()
        st.altair_chart(chart.encode(x="time:T", y="value:Q", color="line:N"), width="stretch")


drawn = os.environ.get("ROLLGUARD_FLOOR_CHARTS", "none")
st.title("Floor")
if drawn == "plotly":
    start, end, step_s, rows = _rows()
    figure = charts.metric_figure(rows, start=start, end=end, step_s=step_s)  # type: ignore[arg-type]
    st.plotly_chart(figure, config={"displaylogo": False})
elif drawn == "vega":
    _vega(_rows()[3])
st.caption("24 hours at the automatic step")
