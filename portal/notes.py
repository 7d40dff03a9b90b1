"""Annotations a traffic run leaves on the flag service's timeline (start and end of a scenario).

`rollguard traffic run` posts them so that the dashboard marks when a mass
submission began and ended. A note that cannot be posted is logged and
skipped: the traffic itself matters more than its marker.
"""

from __future__ import annotations

import logging

from flags.client import FlagsClient, FlagsError, FlagsUnavailable

logger = logging.getLogger(__name__)


class Notes:
    """Posts annotations when both a flag service URL and an admin token are given; else does nothing."""

    def __init__(self, flags_url: str | None, admin_token: str | None) -> None:
        self._client = (
            FlagsClient(flags_url, admin_token, actor="traffic", timeout=3.0, retries=1)
            if flags_url and admin_token
            else None
        )

    def add(self, text: str, *, kind: str) -> None:
        if self._client is None:
            return
        try:
            self._client.annotate(text, kind=kind)
        except (FlagsError, FlagsUnavailable) as exc:
            logger.warning("could not annotate %r on the flag service: %s", kind, exc)
