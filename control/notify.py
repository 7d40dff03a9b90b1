"""Notifications of rollbacks and promotions: a generic JSON webhook and a Slack-compatible one.

The decision loop calls `Notifier.notify` after it changed a flag; the alert
receiver may use it too. Each configured URL gets the event with retries
(connection errors, 429 and 5xx, with exponential backoff); a 4xx other than
429 is not retried. A failed notification is logged and reported, never
raised: the flag change it reports has already happened.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

logger = logging.getLogger(__name__)

_ICONS = {"rollback": ":rotating_light:", "promote": ":arrow_up:", "complete": ":white_check_mark:"}


def slack_text(event: Mapping[str, Any]) -> str:
    """Render an event as one Slack message line."""
    action = str(event.get("action", "event"))
    flag = event.get("flag", "?")
    icon = _ICONS.get(action, ":information_source:")
    verb = {"rollback": "rolled back", "promote": "promoted", "complete": "completed"}.get(action, action)
    rollout = event.get("rollout")
    target = f" to {rollout}%" if action == "promote" and rollout is not None else ""
    prefix = "[dry run] " if event.get("dry_run") else ""
    return f"{prefix}{icon} Rollguard {verb} `{flag}`{target}: {event.get('reason', '')}"


class Notifier:
    """Sends events to the configured webhook URLs (either may be None)."""

    def __init__(
        self,
        webhook_url: str | None = None,
        slack_url: str | None = None,
        *,
        retries: int = 3,
        backoff_s: float = 0.5,
        timeout_s: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.webhook_url = webhook_url
        self.slack_url = slack_url
        self._retries = retries
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._http = httpx.Client(timeout=timeout_s, transport=transport)

    @property
    def enabled(self) -> bool:
        return bool(self.webhook_url or self.slack_url)

    def close(self) -> None:
        self._http.close()

    def notify(self, event: Mapping[str, Any]) -> bool:
        """Send `event` to every configured URL; True when all of them accepted it."""
        delivered = True
        if self.webhook_url:
            delivered &= self._post(self.webhook_url, dict(event))
        if self.slack_url:
            delivered &= self._post(self.slack_url, {"text": slack_text(event)})
        return delivered

    def _post(self, url: str, body: dict[str, Any]) -> bool:
        for attempt in range(self._retries + 1):
            try:
                response = self._http.post(url, json=body)
            except httpx.HTTPError as exc:
                problem = str(exc) or type(exc).__name__
            else:
                if response.status_code < 300:
                    return True
                problem = f"HTTP {response.status_code}"
                if response.status_code < 500 and response.status_code != 429:
                    logger.warning("notification to %s refused: %s", _redact(url), problem)
                    return False
            if attempt < self._retries:
                self._sleep(self._backoff_s * 2**attempt)
        logger.warning(
            "notification to %s failed after %d attempts: %s", _redact(url), self._retries + 1, problem
        )
        return False


def _redact(url: str) -> str:
    # Webhook URLs carry their secret in the path (Slack's do); log the host only.
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}{':' + str(parsed.port) if parsed.port else ''}/..."
