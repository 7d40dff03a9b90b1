"""Notifications reach a generic JSON webhook and a Slack-compatible one, with retries."""

from __future__ import annotations

import json

import httpx

from control.notify import Notifier, slack_text

EVENT = {
    "action": "rollback",
    "flag": "exam-attempts-optimization",
    "reason": "guardrail error_rate[optimized]<=0.02 failed 2 consecutive checks: value 0.2",
    "rollout": 10,
    "dry_run": False,
}


class Endpoint:
    """A webhook endpoint (the boundary) answering with scripted statuses, recording bodies."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.received: list[tuple[str, dict]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.received.append((str(request.url), json.loads(request.content)))
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 0:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(status)


def notifier(endpoint: Endpoint, **kwargs) -> tuple[Notifier, list[float]]:
    waits: list[float] = []
    n = Notifier(transport=httpx.MockTransport(endpoint), sleep=waits.append, **kwargs)
    return n, waits


def test_generic_webhook_gets_the_event_and_slack_gets_text():
    endpoint = Endpoint()
    n, _ = notifier(
        endpoint, webhook_url="http://hooks.test/generic", slack_url="http://hooks.test/slack/T/B/x"
    )
    assert n.notify(EVENT)
    (generic_url, generic), (slack_url, slack) = endpoint.received
    assert generic_url == "http://hooks.test/generic" and generic == EVENT
    assert slack_url.endswith("/slack/T/B/x")
    assert set(slack) == {"text"}
    assert "rolled back `exam-attempts-optimization`" in slack["text"] and "value 0.2" in slack["text"]


def test_retries_server_errors_and_connection_failures_with_backoff():
    endpoint = Endpoint(503, 0, 200)
    n, waits = notifier(endpoint, webhook_url="http://hooks.test/generic", backoff_s=0.5)
    assert n.notify(EVENT)
    assert len(endpoint.received) == 3
    assert waits == [0.5, 1.0]


def test_gives_up_after_the_retries_and_reports_it():
    endpoint = Endpoint(500, 500, 500, 500, 500)
    n, waits = notifier(endpoint, webhook_url="http://hooks.test/generic", retries=2)
    assert not n.notify(EVENT)
    assert len(endpoint.received) == 3 and len(waits) == 2


def test_client_errors_are_not_retried():
    endpoint = Endpoint(404)
    n, waits = notifier(endpoint, slack_url="http://hooks.test/slack")
    assert not n.notify(EVENT)
    assert len(endpoint.received) == 1 and waits == []


def test_promotion_and_dry_run_text():
    text = slack_text({"action": "promote", "flag": "f", "rollout": 50, "reason": "healthy", "dry_run": True})
    assert text.startswith("[dry run]") and "promoted `f` to 50%" in text


def test_nothing_configured_sends_nothing():
    endpoint = Endpoint()
    n, _ = notifier(endpoint)
    assert not n.enabled and n.notify(EVENT) and endpoint.received == []
