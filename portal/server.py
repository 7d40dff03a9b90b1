"""Run a WSGI app factory under gunicorn (gthread) or granian, from `rollguard portal serve` and the bench.

Both servers build the app in each worker process after the fork, from an
import path `"module:factory"`: threads, sockets and the Unleash scheduler do
not survive a fork. The factory reads its settings from the environment
(`portal.wsgi.create` for the portal).

- gunicorn gthread: one process per worker with many threads; Python parses
  HTTP and juggles the connections.
- granian: a Rust HTTP server; connections and parsing stay out of the GIL and
  `threads` Python threads per worker run the app. On this project's 2-core
  bench it carries more users at a lower p95 than gthread (bench/portal_capacity.py).

The threads of a worker share the in-process cache. With more than one worker
each has its own cache and its own /metrics; submissions reach every worker's
copy through Redis or PostgreSQL LISTEN/NOTIFY (`portal.invalidation`).
"""

from __future__ import annotations

import importlib
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

SERVERS = ("granian", "gunicorn")
DEFAULT_SERVER = "granian"

# Thousands of virtual users open connections at once during a mass submission.
_BACKLOG = 4096


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
        "backlog": _BACKLOG,
        "worker_connections": _BACKLOG,
        "accesslog": None,
        "preload_app": False,
        # gunicorn's default control socket (~/.gunicorn/gunicorn.ctl) is one path for every
        # server of the user: the alert receiver's would take it over. One per server and port instead.
        "control_socket": str(Path(tempfile.gettempdir()) / f"rollguard-portal-{port}.ctl"),
    }


def serve(target: str, *, server: str, host: str, port: int, workers: int, threads: int) -> None:
    """Serve the app that the factory at `target` ("module:function") builds, until stopped."""
    if server == "gunicorn":
        factory = _import(target)
        PortalServer(factory, gunicorn_options(host=host, port=port, workers=workers, threads=threads)).run()
    elif server == "granian":
        _serve_granian(target, host=host, port=port, workers=workers, threads=threads)
    else:
        raise ValueError(f"unknown server {server!r}; one of {SERVERS}")


def _serve_granian(target: str, *, host: str, port: int, workers: int, threads: int) -> None:
    from granian import Granian
    from granian.constants import Interfaces
    from granian.log import LogLevels

    Granian(
        target,
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        factory=True,
        workers=workers,
        blocking_threads=threads,
        backlog=_BACKLOG,
        log_level=LogLevels.warning,
        workers_kill_timeout=10,
    ).serve()


def _import(target: str) -> Callable[[], Any]:
    module, _, name = target.partition(":")
    factory: Callable[[], Any] = getattr(importlib.import_module(module), name)
    return factory
