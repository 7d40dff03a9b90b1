"""Run the portal under gunicorn (gthread), from `rollguard portal serve`.

gthread keeps one process per worker with many threads, so the threads of a
worker share the in-process cache. With more than one worker each worker has
its own cache and its own /metrics; use Redis (ROLLGUARD_REDIS_URL) so that a
submission invalidates every worker's copy.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication


class PortalServer(BaseApplication):  # type: ignore[misc]
    """A gunicorn application whose workers each build the app with `factory`."""

    def __init__(self, factory: Callable[[], Any], options: dict[str, Any]) -> None:
        self._factory = factory
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # Built in each worker after the fork: threads, sockets and the Unleash scheduler do not survive a fork.
        return self._factory()


def gunicorn_options(
    *, host: str, port: int, workers: int, threads: int, timeout_s: int = 60
) -> dict[str, Any]:
    """Options for a gthread server on host:port."""
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "timeout": timeout_s,
        "graceful_timeout": 10,
        "keepalive": 5,
        # Thousands of virtual users open connections at once during a mass submission.
        "backlog": 4096,
        "worker_connections": 4096,
        "accesslog": None,
        "preload_app": False,
        # gunicorn's default control socket (~/.gunicorn/gunicorn.ctl) is one path for every
        # server of the user: the alert receiver's would take it over. One per server and port instead.
        "control_socket": str(Path(tempfile.gettempdir()) / f"rollguard-portal-{port}.ctl"),
    }
