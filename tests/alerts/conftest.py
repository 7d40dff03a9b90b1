"""Fixtures of the alerts tests: a flag service shared per module, receivers, payloads."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from alerts.receiver import create_app
from alerts.settings import AlertsSettings
from flags.client import Flag, FlagsClient, Guardrail
from tests.conftest import LiveFlagService, start_flag_service

FN = "get_all_exam_attempts"


@pytest.fixture(scope="module")
def flags_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveFlagService]:
    """One real flag service for a module's tests; each test uses flags of its own."""
    service = start_flag_service(tmp_path_factory.mktemp("flags"))
    yield service
    service.process.terminate()


def make_settings(
    tmp_path: Path, *, flags_url: str, admin_token: str | None, token: str | None, **overrides: Any
) -> AlertsSettings:
    values: dict[str, Any] = {
        "flags_url": flags_url,
        "admin_token": admin_token,
        "alerts_token": token,
        "alerts_token_file": None,
        "alerts_database_url": f"sqlite:///{tmp_path / 'alerts.db'}",
        "alerts_flags_retries": 0,
        **overrides,
    }
    return AlertsSettings(**values)


class Receiver:
    """The receiver app under a Flask test client, with the token Alertmanager would send."""

    def __init__(self, client: FlaskClient, token: str) -> None:
        self.client = client
        self.token = token

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def deliver(self, payload: dict[str, Any]) -> Any:
        return self.client.post("/alertmanager/webhook", json=payload, headers=self.auth())

    def deliveries(self, **params: str) -> list[dict[str, Any]]:
        response = self.client.get("/alertmanager/deliveries", query_string=params, headers=self.auth())
        assert response.status_code == 200, response.json
        return list(response.json["deliveries"])


@pytest.fixture
def receiver(tmp_path: Path, flags_live: LiveFlagService) -> Receiver:
    token = "alerts-" + secrets.token_hex(12)
    settings = make_settings(
        tmp_path, flags_url=flags_live.url, admin_token=flags_live.admin_token, token=token
    )
    return Receiver(create_app(settings).test_client(), token)


def new_flag(flags: LiveFlagService, *, guardrails: tuple[Guardrail, ...] = (), **fields: Any) -> Flag:
    """Create an enabled flag with a unique key on the live service."""
    key = f"opt-{uuid.uuid4().hex[:10]}"
    values: dict[str, Any] = {
        "enabled": True,
        "rollout": 10,
        "state": "rolling_out",
        "payload": {"fn": FN},
        "guardrails": list(guardrails),
        **fields,
    }
    with flags.admin("test-setup") as admin:
        return admin.create_flag(key, **values)


def admin(flags: LiveFlagService) -> FlagsClient:
    return flags.admin("test-check")


def alert(
    flag: str | None,
    *,
    alertname: str = "RollguardErrorBudgetBurn",
    status: str = "firing",
    fingerprint: str | None = None,
    starts_at: str = "2026-11-26T03:00:00.123456789Z",
    action: str | None = "rollback",
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One alert as Alertmanager puts it in a version-4 webhook payload."""
    labels = {"alertname": alertname, "severity": "page"}
    if flag is not None:
        labels["flag"] = flag
    if action is not None:
        labels["action"] = action
    return {
        "status": status,
        "labels": labels,
        "annotations": annotations
        if annotations is not None
        else {"summary": f"{flag} burns its error budget", "value": "0.42"},
        "startsAt": starts_at,
        "endsAt": "0001-01-01T00:00:00Z"
        if status == "firing"
        else datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "generatorURL": "http://127.0.0.1:9090/graph",
        "fingerprint": fingerprint or secrets.token_hex(8),
    }


def payload(*alerts: dict[str, Any]) -> dict[str, Any]:
    """A version-4 webhook payload carrying `alerts`."""
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    return {
        "version": "4",
        "groupKey": '{}:{alertname="RollguardErrorBudgetBurn"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "rollguard-rollback",
        "groupLabels": {"alertname": "RollguardErrorBudgetBurn"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": list(alerts),
    }
