"""The official Unleash SDK against a live flag service: rollout shares, stickiness, kill, 304 polls.

One flag service process with one worker, so that its `/metrics` counts every
poll the SDK makes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from UnleashClient import UnleashClient

from tests.conftest import LiveFlagService, start_flag_service
from tests.support import wait_until

USERS = [f"user-{i}" for i in range(10_000)]


@pytest.fixture
def one_worker_service(tmp_path: Path) -> Iterator[LiveFlagService]:
    service = start_flag_service(tmp_path, extra_env={"ROLLGUARD_FLAGS_WORKERS": "1"})
    yield service
    service.process.terminate()


@pytest.fixture
def sdk(one_worker_service: LiveFlagService, tmp_path: Path) -> Iterator[UnleashClient]:
    client = one_worker_service.sdk("rollout-test", tmp_path / "cache")
    yield client
    client.destroy()


def _enabled(sdk: UnleashClient, key: str) -> set[str]:
    return {user for user in USERS if sdk.is_enabled(key, {"userId": user})}


def _features_polls(service: LiveFlagService, status: str) -> float:
    text = httpx.get(f"{service.url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        if family.name == "rollguard_flags_client_features_requests":
            return sum(
                s.value
                for s in family.samples
                if s.name.endswith("_total") and s.labels.get("status") == status
            )
    return 0.0


def test_rollouts_enable_their_share_of_users_and_stay_sticky(
    one_worker_service: LiveFlagService, sdk: UnleashClient
) -> None:
    with one_worker_service.admin("test") as admin:
        for key, rollout in (("r10", 10), ("r50", 50), ("r100", 100), ("grow", 10)):
            admin.create_flag(key, enabled=True, rollout=rollout)
        sdk.initialize_client()
        wait_until(lambda: {"r10", "r50", "r100", "grow"} <= set(sdk.feature_definitions()), what="flags")

        for key, rollout in (("r10", 10), ("r50", 50), ("r100", 100)):
            share = 100 * len(_enabled(sdk, key)) / len(USERS)
            assert abs(share - rollout) <= 2, (key, share)

        at_10 = _enabled(sdk, "grow")
        admin.set_rollout("grow", 50, reason="next stage")
        wait_until(lambda: len(_enabled(sdk, "grow")) > 3 * len(at_10), what="the SDK sees 50%")
        at_50 = _enabled(sdk, "grow")
        assert abs(100 * len(at_50) / len(USERS) - 50) <= 2
        assert at_10 <= at_50, "a user enabled at 10% must stay enabled at 50%"


def test_kill_turns_the_flag_off_for_everyone_within_a_refresh(
    one_worker_service: LiveFlagService, sdk: UnleashClient
) -> None:
    with one_worker_service.admin("test") as admin:
        admin.create_flag("opt", enabled=True, rollout=100)
        sdk.initialize_client()
        wait_until(lambda: "opt" in sdk.feature_definitions(), what="flag loaded")
        assert len(_enabled(sdk, "opt")) == len(USERS)

        admin.kill("opt", reason="guardrail breached")
        # The SDK refreshes every second: a few refreshes at most, never an unbounded wait.
        wait_until(lambda: not sdk.is_enabled("opt", {"userId": USERS[0]}), timeout=5, what="kill seen")
        assert _enabled(sdk, "opt") == set()


def test_the_sdk_polls_again_with_its_etag_and_gets_304(
    one_worker_service: LiveFlagService, sdk: UnleashClient
) -> None:
    with one_worker_service.admin("test") as admin:
        admin.create_flag("opt", enabled=True, rollout=50)
    assert _features_polls(one_worker_service, "304") == 0
    sdk.initialize_client()
    wait_until(lambda: "opt" in sdk.feature_definitions(), what="flag loaded")
    assert _features_polls(one_worker_service, "200") >= 1
    cohort = _enabled(sdk, "opt")
    wait_until(lambda: _features_polls(one_worker_service, "304") >= 1, what="a 304 poll")
    # A 304 keeps what the SDK had: the same users are still in the cohort.
    assert _enabled(sdk, "opt") == cohort
    assert abs(100 * len(cohort) / len(USERS) - 50) <= 2


def test_ofrep_decides_like_the_sdk_for_the_same_user(
    one_worker_service: LiveFlagService, sdk: UnleashClient
) -> None:
    with one_worker_service.admin("test") as admin:
        admin.create_flag("opt", enabled=True, rollout=37, payload={"ttl_s": 30})
    sdk.initialize_client()
    wait_until(lambda: "opt" in sdk.feature_definitions(), what="flag loaded")
    users = USERS[:1000]
    with httpx.Client(
        base_url=one_worker_service.url, headers={"Authorization": one_worker_service.client_token}
    ) as http:
        ofrep = {
            user: http.post("/ofrep/v1/evaluate/flags/opt", json={"context": {"targetingKey": user}}).json()[
                "value"
            ]
            for user in users
        }
    by_sdk = {user: sdk.is_enabled("opt", {"userId": user}) for user in users}
    assert ofrep == by_sdk
    assert 0 < sum(by_sdk.values()) < len(users)
