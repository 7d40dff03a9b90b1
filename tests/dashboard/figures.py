"""The flag page's figures read back as the browser gets them: packed arrays unpacked, panels by title.

The metric panels are the rows of one figure (`dashboard.charts.metric_figure`);
`panels` splits a figure's traces by row and names each row by its title. A
figure is either the JSON Streamlit sends (`c.proto.spec` of an AppTest chart)
or a `plotly.graph_objects.Figure`.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import numpy as np
import plotly.graph_objects as go


def spec_of(figure: go.Figure | str | dict[str, Any]) -> dict[str, Any]:
    """A figure as the plain JSON document Plotly draws from."""
    if isinstance(figure, go.Figure):
        return json.loads(figure.to_json())
    if isinstance(figure, str):
        return json.loads(figure)
    return figure


def values(array: Any) -> list[Any]:
    """A trace's x or y as a list: packed binary (`{"dtype", "bdata"}`) unpacked, NaN (a gap) as None."""
    if isinstance(array, dict) and "bdata" in array:
        array = np.frombuffer(base64.b64decode(array["bdata"]), dtype=np.dtype(array["dtype"])).tolist()
    return [None if isinstance(v, float) and math.isnan(v) else v for v in array or []]


def drawn(array: Any) -> list[Any]:
    """The values of a trace that are drawn (the gaps left out)."""
    return [v for v in values(array) if v is not None]


def panels(figure: go.Figure | str | dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """{row title: {trace name: trace}} of the metrics figure, with x and y unpacked."""
    spec = spec_of(figure)
    titles = [
        note["text"]
        for note in spec["layout"].get("annotations", [])
        if note.get("xref") == "paper" and note.get("x") == 0
    ]
    found: dict[str, dict[str, dict[str, Any]]] = {title: {} for title in titles}
    for trace in spec["data"]:
        row = int((trace.get("xaxis") or "x").removeprefix("x") or 1)
        found[titles[row - 1]][trace["name"]] = {**trace, "x": values(trace["x"]), "y": values(trace["y"])}
    return found


def page_figures(at: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The flag page's two Plotly charts in an AppTest: the metric panels and the verdict timeline."""
    specs = [spec_of(chart.proto.spec) for chart in at.get("plotly_chart")]
    assert len(specs) == 2, f"expected the metrics figure and the verdict timeline, got {len(specs)} charts"
    timeline = next(s for s in specs if (s["layout"].get("title") or {}).get("text") == "Guardrail verdicts")
    metrics = next(s for s in specs if s is not timeline)
    return metrics, timeline
