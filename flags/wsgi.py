"""WSGI entry point for running the flag service under any WSGI server: `flags.wsgi:app`.

Reads settings from the environment and configures logging once; run
`rollguard flags serve` (or `flags.startup.prepare`) first so the schema exists.
"""

from __future__ import annotations

import logging

from flags.app import create_app
from flags.settings import Settings

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
app = create_app(Settings())
