"""Keep a process's long-lived objects out of the garbage collector's way.

Every full collection walks every tracked object and holds the GIL while it
does. A portal worker's app (Flask, SQLAlchemy, pydantic, the Unleash SDK:
about 110,000 objects) and the load generator's imports (locust, gevent) live
as long as their process, so walking them again and again only pauses the
requests in flight: the portal's while a mass submission fills its cache, and
in the load generator every user's, each of whose latency counts the pause.
Pure: the standard library only, so that both processes may import it.
"""

from __future__ import annotations

import gc


def freeze_what_startup_made() -> None:
    """Free what start-up left as garbage, then move every object left out of the collected generations."""
    gc.collect()
    gc.freeze()
