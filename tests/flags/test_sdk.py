"""The official Unleash SDK against `rollguard flags serve`: on/off, stickiness, payload, kill."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from UnleashClient import UnleashClient

from tests.conftest import LiveFlagService
from tests.support import wait_until


@pytest.fixture
def sdk(flag_service: LiveFlagService, tmp_path: Path) -> Iterator[UnleashClient]:
    client = flag_service.sdk("sdk-test", tmp_path / "cache")
    yield client
    client.destroy()


def test_sdk_sees_rollout_payload_and_kill(flag_service: LiveFlagService, sdk: UnleashClient) -> None:
    with flag_service.admin("test") as admin:
        admin.create_flag("opt", enabled=True, rollout=100, payload={"ttl_s": 30, "batch": 8})
        admin.create_flag("half", enabled=True, rollout=50)
        sdk.initialize_client()
        wait_until(lambda: {"opt", "half"} <= set(sdk.feature_definitions()), what="flags loaded")

        assert sdk.is_enabled("opt", {"userId": "student-1"}) is True
        variant = sdk.get_variant("opt", {"userId": "student-1"})
        assert (variant["name"], variant["enabled"]) == ("config", True)
        assert json.loads(variant["payload"]["value"]) == {"ttl_s": 30, "batch": 8}

        cohort = [sdk.is_enabled("half", {"userId": f"student-{i}"}) for i in range(200)]
        assert 60 < sum(cohort) < 140
        assert cohort == [sdk.is_enabled("half", {"userId": f"student-{i}"}) for i in range(200)]

        admin.kill("opt", reason="error rate above guardrail")
        wait_until(lambda: not sdk.is_enabled("opt", {"userId": "student-1"}), what="kill seen by the SDK")
        assert sdk.get_variant("opt", {"userId": "student-1"})["enabled"] is False


def test_registration_is_recorded_without_errors(flag_service: LiveFlagService, sdk: UnleashClient) -> None:
    sdk.initialize_client()
    assert sdk.is_initialized
    assert "error" not in flag_service.process.log_tail().lower()
