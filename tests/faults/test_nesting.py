"""Bodies nested beyond the limit are refused before any parser recurses, on every JSON endpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.receiver import create_app as create_receiver
from flags.jsontext import MAX_JSON_DEPTH, body_too_deep, has_nul
from portal.app import create_app as create_portal
from portal.settings import PortalSettings
from tests.alerts.conftest import make_settings as alerts_settings
from tests.portal.conftest import portal, seed_database

DEEP = ("[" * 5000 + "]" * 5000).encode()


@pytest.mark.parametrize(
    ("data", "deep"),
    [
        pytest.param(DEEP, True, id="5000-arrays"),
        pytest.param(b'{"a":' * 65 + b"1" + b"}" * 65, True, id="65-objects"),
        pytest.param(b'{"a":' * 64 + b"1" + b"}" * 64, False, id="64-objects"),
        pytest.param(b'["' + b"[" * 5000 + b'"]', False, id="brackets-inside-a-string"),
        pytest.param(b'["\\"' + b"[" * 5000 + b'"]', False, id="after-an-escaped-quote"),
        pytest.param(b"[]" * 5000, False, id="wide-not-deep"),
    ],
)
def test_depth_is_counted_outside_strings(data: bytes, deep: bool) -> None:
    assert body_too_deep(data) is deep
    assert MAX_JSON_DEPTH == 64


@pytest.mark.parametrize(
    ("data", "nul"),
    [
        pytest.param(b'"a\\u0000"', True, id="escaped"),
        pytest.param(b'"a\\\\\\u0000"', True, id="after-an-escaped-backslash"),
        pytest.param(b'"a\\\\u0000"', False, id="escaped-backslash-then-text"),
        pytest.param(b'"a\x00"', True, id="raw"),
        pytest.param(b'"a\\u00001"', True, id="followed-by-digits"),
    ],
)
def test_nul_is_found_raw_or_escaped(data: bytes, nul: bool) -> None:
    assert has_nul(data) is nul


def test_alert_receiver_refuses_deep_body(tmp_path: Path) -> None:
    settings = alerts_settings(tmp_path, flags_url="http://127.0.0.1:9", admin_token="x", token="tok")
    client = create_receiver(settings).test_client()
    response = client.post(
        "/alertmanager/webhook",
        data=DEEP,
        headers={"Authorization": "Bearer tok", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json["error"]["code"] == "too_deeply_nested"


def test_portal_batch_refuses_deep_body(tmp_path: Path) -> None:
    url = seed_database(f"sqlite:///{tmp_path / 'portal.db'}")
    app = create_portal(PortalSettings(database_url=url, var_dir=tmp_path / "var", optimize=True))
    try:
        response = app.test_client().post(
            "/api/exam/batch-attempts", data=DEEP, headers={"Content-Type": "application/json"}
        )
    finally:
        portal(app).close()
    assert response.status_code == 400
    assert response.json["error"]["code"] == "too_deeply_nested"
