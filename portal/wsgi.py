"""The portal's WSGI entry point: `portal.wsgi:create` builds the app from the environment.

`rollguard portal serve` hands this import path to gunicorn or granian
(`portal.server.serve`), which call it once in each worker process. The
settings are read here, once per worker: `ROLLGUARD_PORTAL_*` (see
`portal.settings`) and `ROLLGUARD_OPTIMIZER_*` (see `optimizer.settings`).

Once the app is built, what it made is frozen out of the garbage collector's
generations (`portal.longlived`): at 1,200 students the portal's p95 was
194-231 ms with them collected and 152-178 ms without (3 runs each of
`bench/portal_capacity.py`; the README has the run).
"""

from __future__ import annotations

import os

from flask import Flask

from portal.app import create_app
from portal.longlived import freeze_what_startup_made
from portal.runtime import optimizer_config_from_env
from portal.settings import PortalSettings

TARGET = "portal.wsgi:create"


def create() -> Flask:
    """Build the portal app from the environment, then freeze what it built (see above)."""
    app = create_app(PortalSettings(), optimizer_config_from_env(os.environ))
    freeze_what_startup_made()
    return app
