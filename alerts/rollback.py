"""Act on one Alertmanager delivery: kill the flags that firing alerts name, record everything.

Called by `receiver`'s webhook view for each validated payload. A firing alert
labelled `action="rollback"` and `flag=KEY` kills KEY through the flag
service's admin API as `alertmanager:<alertname>`, once per (fingerprint,
startsAt) however often it is delivered. A resolved alert is recorded and
nothing else: a rollback is undone by an operator, never by an alert.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from alerts.payload import WebhookAlert, WebhookPayload
from alerts.store import Action, Delivery, DeliveryStore, utcnow
from control import Notifier
from flags.client import FlagNotFound, FlagsClient, FlagsError, FlagsUnavailable

logger = logging.getLogger(__name__)

FLAG_KEY = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
_UNSAFE_ACTOR_CHARS = re.compile(r"[^A-Za-z0-9_.:-]")
MAX_REASON = 1000

ClientFactory = Callable[[str], FlagsClient]
"""Builds an admin client acting as the given actor; the receiver binds URL and token."""


@dataclass(frozen=True)
class Outcome:
    """What happened to one alert of the delivery."""

    fingerprint: str
    status: str
    flag: str | None
    action: Action
    detail: str | None = None

    def to_json(self) -> dict[str, str | None]:
        return {
            "fingerprint": self.fingerprint,
            "status": self.status,
            "flag": self.flag,
            "action": self.action.value,
            "detail": self.detail,
        }


def handle_delivery(
    payload: WebhookPayload,
    *,
    store: DeliveryStore,
    clients: ClientFactory,
    notifier: Notifier | None = None,
) -> list[Outcome]:
    """Act on every alert of `payload` and record each; failures are outcomes, not exceptions."""
    if payload.truncated_alerts:
        logger.warning(
            "delivery %s dropped %d alerts (max_alerts in Alertmanager's webhook config)",
            payload.group_key,
            payload.truncated_alerts,
        )
    outcomes = []
    for alert in payload.alerts:
        action, detail = _act(alert, store=store, clients=clients)
        if action is Action.KILLED and notifier is not None and notifier.enabled:
            notifier.notify(rollback_event(alert))
        store.record(
            Delivery(
                received_at=utcnow(),
                group_key=payload.group_key,
                fingerprint=alert.fingerprint,
                status=alert.status,
                alertname=alert.alertname,
                flag=alert.labels.get("flag"),
                labels=alert.labels,
                annotations=alert.annotations,
                starts_at=alert.starts_key,
                ends_at=alert.ends_key,
                action=action,
                detail=detail,
            )
        )
        logger.info(
            "alert %s %s flag=%s fingerprint=%s: %s",
            alert.alertname,
            alert.status,
            alert.labels.get("flag"),
            alert.fingerprint,
            action.value,
        )
        outcomes.append(Outcome(alert.fingerprint, alert.status, alert.labels.get("flag"), action, detail))
    return outcomes


def kill_reason(alert: WebhookAlert) -> str:
    """Build the audit reason: alert name, summary and description, and the value if present."""
    name = alert.alertname or "alert"
    texts = (alert.annotations.get(key, "").strip() for key in ("summary", "description"))
    details = " ".join(text for text in texts if text)
    reason = f"{name}: {details}" if details else name
    value = alert.annotations.get("value", "").strip()
    if value:
        reason += f" (value {value})"
    # Control characters from an alert's text must not make the flag service refuse the kill.
    return "".join(ch if ch.isprintable() else " " for ch in reason)[:MAX_REASON]


def rollback_event(alert: WebhookAlert) -> dict[str, object]:
    """Describe a rollback for the notification webhooks, in the controller's event shape."""
    return {
        "type": "rollguard.alert",
        "action": "rollback",
        "flag": alert.labels.get("flag"),
        "reason": kill_reason(alert),
        "guardrail": alert.labels.get("guardrail"),
        "alertname": alert.alertname,
        "fingerprint": alert.fingerprint,
        "starts_at": alert.starts_key,
        "time": utcnow().isoformat(),
        "actor": actor_for(alert),
        "dry_run": False,
    }


def actor_for(alert: WebhookAlert) -> str:
    """Name the audit actor `alertmanager:<alertname>`, restricted to header-safe characters."""
    name = _UNSAFE_ACTOR_CHARS.sub("_", alert.alertname)[:100] or "unnamed"
    return f"alertmanager:{name}"


def _act(alert: WebhookAlert, *, store: DeliveryStore, clients: ClientFactory) -> tuple[Action, str | None]:
    if alert.labels.get("action") != "rollback":
        return Action.IGNORED, 'no action="rollback" label'
    if alert.status == "resolved":
        return Action.RESOLVED, "recorded; a resolved alert never re-enables a flag"
    key = alert.labels.get("flag")
    if not key:
        return Action.MISSING_FLAG, 'action="rollback" without a flag label'
    if not FLAG_KEY.fullmatch(key):
        return Action.INVALID_FLAG, f"{key!r} is not a flag key"
    claim = {"fingerprint": alert.fingerprint, "starts_at": alert.starts_key}
    if not store.claim_rollback(**claim, flag=key, alertname=alert.alertname, now=utcnow()):
        return Action.DUPLICATE, "this firing alert was already acted on"
    try:
        with clients(actor_for(alert)) as client:
            flag = client.kill(key, reason=kill_reason(alert))
    except FlagNotFound:
        store.finish_rollback(**claim)
        return Action.UNKNOWN_FLAG, f"the flag service has no flag {key!r}"
    except (FlagsUnavailable, httpx.HTTPError) as exc:
        store.release_rollback(**claim)
        return Action.FLAG_SERVICE_UNAVAILABLE, str(exc)
    except FlagsError as exc:
        store.release_rollback(**claim)
        return Action.FLAG_SERVICE_REJECTED, str(exc)
    store.finish_rollback(**claim)
    return Action.KILLED, f"{key} enabled={flag.enabled} version={flag.version}"
