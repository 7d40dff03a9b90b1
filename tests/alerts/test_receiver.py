"""The webhook receiver against a live flag service: auth, validation, kill, idempotency, records."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from alerts.errors import ConfigError
from alerts.receiver import create_app
from rollguard import free_port
from tests.alerts.conftest import Receiver, admin, alert, make_settings, new_flag, payload
from tests.conftest import LiveFlagService


def test_rejects_delivery_without_bearer_token(receiver: Receiver, flags_live: LiveFlagService) -> None:
    flag = new_flag(flags_live)
    body = payload(alert(flag.key))

    missing = receiver.client.post("/alertmanager/webhook", json=body)
    wrong = receiver.client.post(
        "/alertmanager/webhook", json=body, headers={"Authorization": "Bearer not-the-token"}
    )
    basic = receiver.client.post(
        "/alertmanager/webhook", json=body, headers={"Authorization": f"Basic {receiver.token}"}
    )

    for response in (missing, wrong, basic):
        assert response.status_code == 401
        assert response.json["error"]["code"] == "unauthenticated"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    with admin(flags_live) as client:
        assert client.get_flag(flag.key).enabled is True
    assert receiver.client.get("/alertmanager/deliveries").status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b'{"version": "3", "alerts": []}', id="old-version"),
        pytest.param(b'{"version": "4", "status": "firing", "alerts": [{"labels": {}}]}', id="alert-fields"),
        pytest.param(b"[1, 2, 3]", id="not-an-object"),
    ],
)
def test_rejects_malformed_payload_with_422(receiver: Receiver, body: bytes) -> None:
    response = receiver.client.post(
        "/alertmanager/webhook",
        data=body,
        headers={**receiver.auth(), "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json["error"]["code"] == "invalid_payload"
    assert receiver.deliveries() == []


def test_firing_rollback_alert_kills_flag_as_alertmanager_actor(
    receiver: Receiver, flags_live: LiveFlagService
) -> None:
    flag = new_flag(flags_live)
    body = payload(
        alert(
            flag.key,
            alertname="RollguardP95LatencyHigh",
            annotations={
                "summary": "p95 is 1.2s",
                "description": "guardrail p95_latency_s<0.2 failed",
                "value": "1.2",
            },
        )
    )

    response = receiver.deliver(body)

    assert response.status_code == 200, response.json
    assert response.json["results"][0]["action"] == "killed"
    with admin(flags_live) as client:
        assert client.get_flag(flag.key).enabled is False
        kills = [e for e in client.events(flag=flag.key) if e.action == "kill"]
    assert len(kills) == 1
    assert kills[0].actor == "alertmanager:RollguardP95LatencyHigh"
    assert kills[0].reason is not None
    assert "RollguardP95LatencyHigh" in kills[0].reason
    assert "p95 is 1.2s" in kills[0].reason
    assert "guardrail p95_latency_s<0.2 failed" in kills[0].reason
    assert "1.2" in kills[0].reason
    (record,) = receiver.deliveries(flag=flag.key)
    assert record["action"] == "killed"
    assert record["status"] == "firing"
    assert record["fingerprint"] == body["alerts"][0]["fingerprint"]
    assert record["labels"]["flag"] == flag.key
    assert record["starts_at"] == "2026-11-26T03:00:00.123456Z"


def test_repeated_delivery_kills_once_and_is_recorded_as_duplicate(
    receiver: Receiver, flags_live: LiveFlagService
) -> None:
    flag = new_flag(flags_live)
    body = payload(alert(flag.key, fingerprint="aa11bb22cc33dd44"))

    first = receiver.deliver(body)
    # An operator turns the flag back on while Alertmanager keeps repeating the same alert.
    with admin(flags_live) as client:
        client.resume(flag.key, reason="operator investigated")
    again = receiver.deliver(body)

    assert first.json["results"][0]["action"] == "killed"
    assert again.status_code == 200
    assert again.json["results"][0]["action"] == "duplicate"
    with admin(flags_live) as client:
        assert client.get_flag(flag.key).enabled is True
        kills = [e for e in client.events(flag=flag.key) if e.action == "kill"]
    assert len(kills) == 1
    assert [d["action"] for d in receiver.deliveries(flag=flag.key)] == ["duplicate", "killed"]


def test_new_firing_episode_of_same_alert_kills_again(
    receiver: Receiver, flags_live: LiveFlagService
) -> None:
    flag = new_flag(flags_live)
    receiver.deliver(payload(alert(flag.key, fingerprint="ee55", starts_at="2026-11-26T03:00:00Z")))
    with admin(flags_live) as client:
        client.resume(flag.key, reason="fixed")

    response = receiver.deliver(
        payload(alert(flag.key, fingerprint="ee55", starts_at="2026-11-26T03:20:00Z"))
    )

    assert response.json["results"][0]["action"] == "killed"
    with admin(flags_live) as client:
        assert client.get_flag(flag.key).enabled is False


def test_resolved_alert_is_recorded_and_never_reenables_flag(
    receiver: Receiver, flags_live: LiveFlagService
) -> None:
    killed = new_flag(flags_live)
    untouched = new_flag(flags_live)
    receiver.deliver(payload(alert(killed.key, fingerprint="ff01")))

    response = receiver.deliver(
        payload(
            alert(killed.key, fingerprint="ff01", status="resolved"),
            alert(untouched.key, fingerprint="ff02", status="resolved"),
        )
    )

    assert response.status_code == 200
    assert [r["action"] for r in response.json["results"]] == ["resolved", "resolved"]
    with admin(flags_live) as client:
        assert client.get_flag(killed.key).enabled is False
        assert client.get_flag(untouched.key).enabled is True
        assert [e.action for e in client.events(flag=untouched.key)] == ["create"]
    resolved = receiver.deliveries(status="resolved")
    assert {d["flag"] for d in resolved} == {killed.key, untouched.key}
    assert all(d["ends_at"] is not None for d in resolved)


def test_unknown_flag_is_recorded_and_acknowledged(receiver: Receiver) -> None:
    response = receiver.deliver(payload(alert("no-such-flag")))

    assert response.status_code == 200
    assert response.json["results"][0]["action"] == "unknown_flag"
    assert receiver.deliveries(flag="no-such-flag")[0]["action"] == "unknown_flag"


@pytest.mark.parametrize(
    ("labels", "action"),
    [
        pytest.param({"flag": "x", "action": None}, "ignored", id="no-action-label"),
        pytest.param({"flag": "x", "action": "notify"}, "ignored", id="other-action"),
        pytest.param({"flag": None, "action": "rollback"}, "missing_flag", id="no-flag-label"),
        pytest.param({"flag": "../tokens", "action": "rollback"}, "invalid_flag", id="not-a-key"),
    ],
)
def test_alert_that_names_no_valid_flag_is_recorded_without_action(
    receiver: Receiver, flags_live: LiveFlagService, labels: dict[str, str | None], action: str
) -> None:
    bystander = new_flag(flags_live)
    response = receiver.deliver(payload(alert(labels["flag"], action=labels["action"])))

    assert response.status_code == 200
    assert response.json["results"][0]["action"] == action
    assert receiver.deliveries()[0]["action"] == action
    with admin(flags_live) as client:
        assert client.get_flag(bystander.key).enabled is True


def test_flag_service_down_answers_503_and_retry_acts(tmp_path: Path, flags_live: LiveFlagService) -> None:
    flag = new_flag(flags_live)
    token = secrets.token_hex(8)
    body = payload(alert(flag.key, fingerprint="dd01"))
    down = make_settings(
        tmp_path, flags_url=f"http://127.0.0.1:{free_port()}", admin_token=flags_live.admin_token, token=token
    )
    up = make_settings(tmp_path, flags_url=flags_live.url, admin_token=flags_live.admin_token, token=token)
    headers = {"Authorization": f"Bearer {token}"}

    failed = create_app(down).test_client().post("/alertmanager/webhook", json=body, headers=headers)
    # Alertmanager retries the same delivery once the flag service answers again.
    retried = create_app(up).test_client().post("/alertmanager/webhook", json=body, headers=headers)

    assert failed.status_code == 503
    assert failed.json["error"]["code"] == "flag_service_unavailable"
    assert failed.json["error"]["details"][0]["action"] == "flag_service_unavailable"
    assert retried.status_code == 200
    assert retried.json["results"][0]["action"] == "killed"
    with admin(flags_live) as client:
        assert client.get_flag(flag.key).enabled is False


def test_flag_service_refusing_our_token_answers_502(tmp_path: Path, flags_live: LiveFlagService) -> None:
    flag = new_flag(flags_live)
    token = secrets.token_hex(8)
    settings = make_settings(tmp_path, flags_url=flags_live.url, admin_token="wrong-admin-token", token=token)

    response = (
        create_app(settings)
        .test_client()
        .post(
            "/alertmanager/webhook",
            json=payload(alert(flag.key)),
            headers={"Authorization": f"Bearer {token}"},
        )
    )

    assert response.status_code == 502
    assert response.json["error"]["details"][0]["action"] == "flag_service_rejected"
    with admin(flags_live) as client:
        assert client.get_flag(flag.key).enabled is True


def test_one_payload_with_several_alerts_acts_on_each(
    receiver: Receiver, flags_live: LiveFlagService
) -> None:
    first, second = new_flag(flags_live), new_flag(flags_live)

    response = receiver.deliver(
        payload(alert(first.key), alert(second.key, alertname="RollguardCacheBytesHigh"))
    )

    assert [r["action"] for r in response.json["results"]] == ["killed", "killed"]
    with admin(flags_live) as client:
        assert client.get_flag(first.key).enabled is False
        assert client.get_flag(second.key).enabled is False
        (event,) = [e for e in client.events(flag=second.key) if e.action == "kill"]
    assert event.actor == "alertmanager:RollguardCacheBytesHigh"


def test_refuses_to_start_without_token_unless_insecure(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, flags_url="http://127.0.0.1:1", admin_token=None, token=None)

    with pytest.raises(ConfigError):
        create_app(settings)
    insecure = create_app(settings, require_token=False).test_client()

    assert insecure.get("/alertmanager/deliveries").status_code == 200


def test_reads_token_from_file(tmp_path: Path) -> None:
    token_file = tmp_path / "alerts.token"
    token_file.write_text("from-a-file\n")
    settings = make_settings(
        tmp_path, flags_url="http://127.0.0.1:1", admin_token=None, token=None, alerts_token_file=token_file
    )
    client = create_app(settings).test_client()

    assert (
        client.get("/alertmanager/deliveries", headers={"Authorization": "Bearer from-a-file"}).status_code
        == 200
    )
    assert (
        client.get("/alertmanager/deliveries", headers={"Authorization": "Bearer other"}).status_code == 401
    )


def test_healthz_is_open_and_reports_ok(receiver: Receiver) -> None:
    response = receiver.client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(json.loads(body))  # type: ignore[attr-defined]
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def notification_sink() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A real HTTP endpoint that keeps what the notifier posts to it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", server.received  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_rollback_is_notified_once_through_the_webhook(
    tmp_path: Path, flags_live: LiveFlagService, notification_sink: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = notification_sink
    flag = new_flag(flags_live)
    token = secrets.token_hex(8)
    settings = make_settings(
        tmp_path,
        flags_url=flags_live.url,
        admin_token=flags_live.admin_token,
        token=token,
        notify_webhook_url=url,
    )
    client = create_app(settings).test_client()
    headers = {"Authorization": f"Bearer {token}"}
    firing = alert(flag.key, fingerprint="nn01", alertname="RollguardCacheBytesHigh")

    for body in (payload(firing), payload(firing), payload({**firing, "status": "resolved"})):
        assert client.post("/alertmanager/webhook", json=body, headers=headers).status_code == 200

    (event,) = received
    assert event["action"] == "rollback"
    assert event["flag"] == flag.key
    assert event["actor"] == "alertmanager:RollguardCacheBytesHigh"
    assert event["reason"].startswith("RollguardCacheBytesHigh")


def test_rejects_oversized_body_with_413(receiver: Receiver) -> None:
    response = receiver.client.post(
        "/alertmanager/webhook",
        data=b'{"pad": "' + b"x" * (5 * 1024 * 1024) + b'"}',
        headers={**receiver.auth(), "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json["error"]["code"] == "request_entity_too_large"


def test_deliveries_reject_non_numeric_limit(receiver: Receiver) -> None:
    response = receiver.client.get("/alertmanager/deliveries?limit=ten", headers=receiver.auth())
    assert response.status_code == 400
    assert response.json["error"]["code"] == "bad_request"
