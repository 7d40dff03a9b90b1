"""The portal's WSGI entry point: `portal.wsgi:create` builds the app from the environment.

`rollguard portal serve` hands this import path to gunicorn or granian
(`portal.server.serve`), which call it once in each worker process. The
settings are read here, once per worker: `ROLLGUARD_PORTAL_*` (see
`portal.settings`) and `ROLLGUARD_OPTIMIZER_*` (see `optimizer.settings`).
"""

from __future__ import annotations

import os

from flask import Flask

from portal.app import create_app
from portal.runtime import optimizer_config_from_env
from portal.settings import PortalSettings

TARGET = "portal.wsgi:create"


def create() -> Flask:
    """Build the portal app from the environment."""
    return create_app(PortalSettings(), optimizer_config_from_env(os.environ))
