"""Failed authentications are limited; valid tokens never are, whoever fails next to them."""

from __future__ import annotations

import secrets
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask.testing import FlaskClient

from alerts.receiver import create_app as create_receiver
from flags.app import create_app
from flags.startup import prepare
from tests.alerts.conftest import make_settings as alerts_settings
from tests.conftest import LiveFlagService, start_flag_service
from tests.control.conftest import FakeClock, MetricsTarget, metrics_target, store  # noqa: F401  (fixtures)
from tests.control.test_loop import KEY, Harness, Webhook
from tests.control.test_loop import create_flag as create_guarded_flag
from tests.flags.conftest import admin, create_flag, make_settings, sdk
from tests.support import wait_until


def _client(tmp_path: Path, **overrides: Any) -> FlaskClient:
    settings = make_settings(tmp_path, **overrides)
    prepare(settings)
    return create_app(settings).test_client()


def _guess(client: FlaskClient, secret: str, **headers: str) -> int:
    return client.get("/api/admin/flags", headers={"Authorization": secret, **headers}).status_code


def test_valid_tokens_are_never_throttled_by_a_guesser(tmp_path: Path) -> None:
    client = _client(
        tmp_path, flags_auth_failures_per_minute=5, flags_auth_failures_per_address_per_minute=20
    )
    create_flag(client, "opt", enabled=True, rollout=10)
    statuses = [_guess(client, f"guess-{i}") for i in range(300)]
    assert statuses[:20] == [401] * 20 and set(statuses[20:]) == {429}
    for round_ in range(3):
        # A flag change moves the revision: cached tokens are rechecked, not dropped into the limiter.
        kill = client.post("/api/admin/flags/opt/kill", json={"reason": f"r{round_}"}, headers=admin())
        assert kill.status_code == 200
        assert client.get("/api/admin/flags", headers=admin()).status_code == 200
        assert client.get("/api/client/features", headers=sdk()).status_code == 200
        resume = client.post("/api/admin/flags/opt/resume", json={"reason": f"r{round_}"}, headers=admin())
        assert resume.status_code == 200
        assert _guess(client, "guess-again") == 429


def test_failures_are_counted_per_credential_below_the_address_ceiling(tmp_path: Path) -> None:
    client = _client(
        tmp_path, flags_auth_failures_per_minute=3, flags_auth_failures_per_address_per_minute=10
    )
    assert [_guess(client, "stale-token") for _ in range(5)] == [401, 401, 401, 429, 429]
    # Another client behind the same address with its own wrong token still learns it is wrong.
    assert _guess(client, "other-typo") == 401


def test_revoked_token_stops_working_while_others_stay_cached(tmp_path: Path) -> None:
    client = _client(tmp_path)
    created = client.post("/api/admin/tokens", json={"name": "ci", "scope": "client"}, headers=admin()).json
    secret = created["secret"]
    assert client.get("/api/client/features", headers={"Authorization": secret}).status_code == 200
    assert client.delete(f"/api/admin/tokens/{created['id']}", headers=admin()).status_code == 204
    assert client.get("/api/client/features", headers={"Authorization": secret}).status_code == 401
    assert client.get("/api/client/features", headers=sdk()).status_code == 200


def test_trusted_proxy_addresses_are_limited_apart(tmp_path: Path) -> None:
    limits = {"flags_auth_failures_per_minute": 2, "flags_auth_failures_per_address_per_minute": 2}
    behind = _client(tmp_path / "behind", flags_trusted_proxies=1, **limits)
    assert [_guess(behind, "x", **{"X-Forwarded-For": "10.0.0.1"}) for _ in range(3)] == [401, 401, 429]
    assert _guess(behind, "x", **{"X-Forwarded-For": "10.0.0.2"}) == 401
    # Without trusted proxies the header is the client's own claim and is ignored.
    direct = _client(tmp_path / "direct", **limits)
    assert [_guess(direct, "x", **{"X-Forwarded-For": "10.0.0.1"}) for _ in range(3)] == [401, 401, 429]
    assert _guess(direct, "x", **{"X-Forwarded-For": "10.0.0.2"}) == 429


def test_alert_receiver_limits_failed_authentication(tmp_path: Path) -> None:
    settings = alerts_settings(
        tmp_path,
        flags_url="http://127.0.0.1:9",
        admin_token="x",
        token="right",
        alerts_auth_failures_per_minute=3,
        alerts_auth_failures_per_address_per_minute=3,
    )
    client = create_receiver(settings).test_client()

    def get(token: str) -> Any:
        return client.get("/alertmanager/deliveries", headers={"Authorization": f"Bearer {token}"})

    assert [get(f"wrong-{i}").status_code for i in range(5)] == [401, 401, 401, 429, 429]
    limited = get("wrong-5")
    assert limited.json["error"]["code"] == "too_many_requests"
    assert limited.headers["Retry-After"] == "60"
    assert get("right").status_code == 200


@pytest.mark.parametrize("proxies", [0, 1])
def test_alert_receiver_honours_trusted_proxies(tmp_path: Path, proxies: int) -> None:
    settings = alerts_settings(
        tmp_path,
        flags_url="http://127.0.0.1:9",
        admin_token="x",
        token="right",
        alerts_auth_failures_per_minute=1,
        alerts_auth_failures_per_address_per_minute=1,
        alerts_trusted_proxies=proxies,
    )
    client = create_receiver(settings).test_client()

    def get(forwarded: str) -> int:
        headers = {"Authorization": "Bearer wrong", "X-Forwarded-For": forwarded}
        return client.get("/alertmanager/deliveries", headers=headers).status_code

    assert [get("10.0.0.1"), get("10.0.0.1")] == [401, 429]
    assert get("10.0.0.2") == (401 if proxies else 429)


class Guesser:
    """Sends bad tokens to the admin API from this address, 50 a second, until stopped."""

    def __init__(self, url: str) -> None:
        self.statuses: Counter[int] = Counter()
        self._url = url
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._guess)

    def __enter__(self) -> Guesser:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _guess(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self._stop.wait(0.02):  # the pace of the guesser, not a synchronisation
                headers = {"Authorization": "guess-" + secrets.token_hex(8)}
                self.statuses[http.get(f"{self._url}/api/admin/flags", headers=headers).status_code] += 1


@pytest.fixture
def limited_service(tmp_path: Path) -> Iterator[LiveFlagService]:
    """A flag service whose failure limit a guesser reaches within a second."""
    limits = {
        "ROLLGUARD_FLAGS_AUTH_FAILURES_PER_MINUTE": "5",
        "ROLLGUARD_FLAGS_AUTH_FAILURES_PER_ADDRESS_PER_MINUTE": "20",
    }
    live = start_flag_service(tmp_path, extra_env=limits)
    yield live
    live.process.terminate()


@pytest.fixture
def clock(limited_service: LiveFlagService) -> FakeClock:
    return FakeClock(datetime.now(UTC))


@pytest.mark.integration
def test_a_guesser_at_the_limit_does_not_delay_the_controllers_rollback(
    limited_service: LiveFlagService,
    metrics_target: MetricsTarget,  # noqa: F811
    store: Any,  # noqa: F811
    clock: FakeClock,
) -> None:
    operator = limited_service.admin("operator")
    harness = Harness(metrics_target, store, clock, limited_service, Webhook())
    create_guarded_flag(operator)
    try:
        with Guesser(limited_service.url) as guesser:
            wait_until(lambda: guesser.statuses[429] > 0, what="the guesser to reach the failure limit")
            controller = harness.controller()
            actions: list[str] = []
            for _ in range(5):
                actions += [d.action.kind.value for d in harness.step(controller, error_pct=30)]
                if not operator.get_flag(KEY).enabled:
                    break
            # The same ticks as without a guesser (tests/control/test_loop.py): fail, fail, roll back.
            assert actions == ["hold", "hold", "rollback"]
            features = httpx.get(
                f"{limited_service.url}/api/client/features",
                headers={"Authorization": limited_service.client_token},
            )
            assert features.status_code == 200
        assert set(guesser.statuses) <= {401, 429}, guesser.statuses
    finally:
        harness.close()
        operator.close()
