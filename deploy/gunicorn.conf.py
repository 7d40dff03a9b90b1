"""gunicorn settings for the flag service when run directly by gunicorn.

    ROLLGUARD_DATABASE_URL=... rollguard flags serve   # preferred: migrates, then runs gunicorn
    gunicorn -c deploy/gunicorn.conf.py flags.wsgi:app  # same settings, schema already migrated

The values come from `flags.server.gunicorn_options`, which `rollguard flags
serve` uses too, so both ways run the same worker class and count
(ROLLGUARD_FLAGS_WORKER_CLASS, ROLLGUARD_FLAGS_WORKERS, ROLLGUARD_FLAGS_THREADS,
ROLLGUARD_FLAGS_WORKER_CONNECTIONS;
bind from ROLLGUARD_FLAGS_HOST/ROLLGUARD_FLAGS_PORT, default 127.0.0.1:4242).
"""

from __future__ import annotations

import os

from flags.server import gunicorn_options
from flags.settings import Settings

_options = gunicorn_options(
    Settings(),
    host=os.environ.get("ROLLGUARD_FLAGS_HOST", "127.0.0.1"),
    port=int(os.environ.get("ROLLGUARD_FLAGS_PORT", "4242")),
)
bind = _options["bind"]
workers = _options["workers"]
worker_class = _options["worker_class"]
threads = _options["threads"]
worker_connections = _options["worker_connections"]
keepalive = _options["keepalive"]
timeout = _options["timeout"]
graceful_timeout = _options["graceful_timeout"]
errorlog = _options["errorlog"]
loglevel = _options["loglevel"]
proc_name = _options["proc_name"]
