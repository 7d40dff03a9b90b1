"""Running the flag service: gunicorn in production, Werkzeug with --dev.

`flags.cli serve` calls `flags.greenlets.cooperate` first, then `run`. Each gunicorn worker
builds its own app (and so its own database pool) after the fork.
"""

from __future__ import annotations

import logging
from typing import Any

import gevent
from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.workers.ggevent import GeventWorker

from flags.app import create_app
from flags.settings import Settings

logger = logging.getLogger(__name__)


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self._settings = settings
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for name, value in self._options.items():
            self.cfg.set(name, value)

    def load(self) -> Any:
        return create_app(self._settings)


class StreamingGeventWorker(GeventWorker):  # type: ignore[misc]
    """gunicorn's gevent worker, ending the open SDK streams as soon as it is told to stop.

    Streams never finish on their own, so without this a restart would wait
    out `graceful_timeout` and the SDKs would only notice when the worker is killed.
    """

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        app = self.wsgi
        if isinstance(app, Flask):
            # Out of the signal handler, as gunicorn's handle_quit does: close() takes a lock.
            gevent.spawn(app.extensions["rollguard"].broadcaster.close)


_WORKER_CLASSES = {"gevent": f"{__name__}.StreamingGeventWorker", "gthread": "gthread", "sync": "sync"}


def gunicorn_options(settings: Settings, *, host: str, port: int) -> dict[str, Any]:
    """The gunicorn settings the service runs with (also used by deploy/gunicorn.conf.py)."""
    return {
        "bind": f"{host}:{port}",
        "workers": settings.flags_workers,
        "worker_class": _WORKER_CLASSES[settings.flags_worker_class],
        "threads": settings.flags_threads,
        "worker_connections": settings.flags_worker_connections,
        "keepalive": 5,
        "timeout": 30,
        "graceful_timeout": 10,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "proc_name": "rollguard-flags",
    }


def run(settings: Settings, *, host: str, port: int, dev: bool) -> None:
    """Serve until interrupted."""
    if dev:
        logger.info("development server on http://%s:%d", host, port)
        create_app(settings).run(host=host, port=port, threaded=True, use_reloader=False)
        return
    options = gunicorn_options(settings, host=host, port=port)
    logger.info(
        "serving on http://%s:%d with %d %s workers",
        host,
        port,
        settings.flags_workers,
        settings.flags_worker_class,
    )
    _Gunicorn(settings, options).run()
