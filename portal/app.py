"""The portal's Flask app factory, used by `rollguard portal serve`, the tests and the bench."""

from __future__ import annotations

import atexit

from flask import Flask

from optimizer import OptimizerConfig
from portal import api, errors, fault, pages
from portal.peercache import RequestScope
from portal.runtime import build_portal
from portal.settings import PortalSettings

# Bounds the JSON bodies of submissions and batch requests.
_MAX_BODY_BYTES = 256 * 1024


def create_app(
    settings: PortalSettings | None = None, optimizer_config: OptimizerConfig | None = None
) -> Flask:
    """Build the portal; `app.extensions["portal"].close()` releases what it holds."""
    settings = settings or PortalSettings()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = _MAX_BODY_BYTES
    portal = build_portal(settings, optimizer_config)
    app.extensions["portal"] = portal
    atexit.register(portal.close)
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(fault.bp)
    errors.register_handlers(app)
    if portal.peers is not None:
        app.wsgi_app = RequestScope(app.wsgi_app, portal.peers)  # type: ignore[method-assign]
    return app
