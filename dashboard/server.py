"""The Streamlit server that `rollguard dashboard` starts, with the pages' libraries loaded first.

`python -m dashboard.server run dashboard/app.py ...` is `python -m streamlit run ...`
that imports, before it listens, the libraries the first page run would otherwise
import while the first operator waits (pandas, which Plotly uses, SQLAlchemy,
the controller's metric code): about a second of a first render on a fresh server.
The dashboard's own modules are left to that run: their caches belong to
Streamlit's runtime, which does not exist yet here.
"""

from __future__ import annotations

import importlib
import sys

PRELOAD = (
    "pandas",
    "plotly.graph_objects",
    "sqlalchemy",
    "httpx",
    "prometheus_api_client",
    "control",
    "flags.client",
)


def preload() -> None:
    """Import what the pages need and Streamlit does not."""
    for name in PRELOAD:
        importlib.import_module(name)


if __name__ == "__main__":
    preload()
    from streamlit.web.cli import main

    sys.exit(main(prog_name="streamlit"))
