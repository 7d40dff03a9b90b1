"""gevent cooperation: patching the standard library early, and telling whether it was.

`flags.cli serve` calls `cooperate` before it imports anything that imports
psycopg; `flags.app` asks `patched` whether a stream costs a thread. This
module imports nothing heavy so that it can run first.
"""

from __future__ import annotations

import sys

from flags.settings import Settings


def cooperate(settings: Settings, *, dev: bool) -> None:
    """Patch the standard library for gevent if gevent will serve.

    psycopg picks its wait function when first imported: only if gevent has
    patched `select` by then do its queries and LISTEN yield to other
    greenlets. `serve` migrates (importing psycopg) before gunicorn forks the
    workers that would patch, so the patch has to come first.
    """
    if settings.flags_worker_class == "gevent" and not dev:
        from gevent import monkey

        monkey.patch_all()


def patched() -> bool:
    """Whether gevent has patched threading (gunicorn's gevent worker), so a stream costs no thread."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("threading"))
