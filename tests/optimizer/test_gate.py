"""The gates: `StaticGate`, and `UnleashGate` against the official SDK (bootstrapped, and against the
real flag service), which must agree with the SDK and follow a flag change within one SDK refresh."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from UnleashClient import UnleashClient
from UnleashClient.cache import FileCache
from UnleashClient.utils import InstanceAllowType

from optimizer import Optimizer, StaticGate, UnleashGate
from optimizer.gate import REASON_FLAG_UNAVAILABLE, Decision
from rollguard import free_port
from tests.conftest import LiveFlagService
from tests.optimizer.conftest import CountingBackend
from tests.support import wait_until

ROLLOUTS = (0, 1, 37, 50, 99, 100)


def rollguard_feature(
    name: str, rollout: int, payload: dict[str, Any] | None = None, *, enabled: bool = True
):
    """A feature in the shape the flag service serves a Rollguard flag."""
    return {
        "name": name,
        "enabled": enabled,
        "impressionData": False,
        "strategies": [
            {
                "name": "flexibleRollout",
                "constraints": [],
                "parameters": {"rollout": str(rollout), "stickiness": "userId", "groupId": name},
                "variants": [
                    {
                        "name": "config",
                        "weight": 1000,
                        "stickiness": "userId",
                        "payload": {"type": "json", "value": json.dumps(payload or {})},
                    }
                ],
            }
        ],
        "variants": [],
    }


def bootstrapped_client(directory: Path, features: list[dict[str, Any]]) -> UnleashClient:
    cache = FileCache("optimizer-gate-test", directory=str(directory))
    cache.bootstrap_from_dict({"version": 2, "features": features})
    return UnleashClient(
        url=f"http://127.0.0.1:{free_port()}/api",
        app_name="optimizer-gate-test",
        disable_metrics=True,
        disable_registration=True,
        cache=cache,
        multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW,
    )


@pytest.fixture(scope="module")
def rollout_client(tmp_path_factory) -> Iterator[UnleashClient]:
    features = [rollguard_feature(f"flag-{r}", r, {"ttl_s": r}) for r in ROLLOUTS]
    features.append(rollguard_feature("killed", 100, enabled=False))
    constrained = rollguard_feature("constrained", 100)
    constrained["strategies"][0]["constraints"] = [
        {"contextName": "userId", "operator": "IN", "values": ["s1", "s2"], "inverted": False}
    ]
    features.append(constrained)
    half_constrained = rollguard_feature("constrained-50", 50)
    half_constrained["strategies"][0]["constraints"] = [
        {"contextName": "userId", "operator": "NOT_IN", "values": ["s1"], "inverted": False}
    ]
    features.append(half_constrained)
    client = bootstrapped_client(tmp_path_factory.mktemp("sdk"), features)
    yield client
    client.destroy()


@pytest.fixture(scope="module")
def gates(rollout_client) -> dict[str, UnleashGate]:
    flags = [f"flag-{r}" for r in ROLLOUTS] + ["killed", "constrained-50"]
    return {flag: UnleashGate(rollout_client, flag) for flag in flags}


@settings(max_examples=300, deadline=None)
@given(user=st.text(min_size=1, max_size=40) | st.from_regex(r"s[0-9]{1,6}", fullmatch=True))
def test_the_gate_agrees_with_the_sdk_for_any_user_and_rollout(rollout_client, gates, user):
    for rollout in ROLLOUTS:
        flag = f"flag-{rollout}"
        assert gates[flag].decide(user).optimized is rollout_client.is_enabled(flag, {"userId": user})


@settings(max_examples=200, deadline=None)
@given(user=st.text(min_size=1, max_size=40) | st.from_regex(r"s[0-9]{1,6}", fullmatch=True))
def test_on_its_sdk_fallback_the_gate_agrees_with_the_sdk_and_carries_the_payload(
    rollout_client, gates, user
):
    gate = gates["constrained-50"]
    decision = gate.decide(user)
    assert not gate.fast
    assert decision.optimized is rollout_client.is_enabled("constrained-50", {"userId": user})
    assert decision.payload == ({} if decision.optimized else None)


def test_the_rollguard_shape_is_decided_without_the_sdk_and_carries_the_payload(gates):
    gate = gates["flag-100"]
    first = gate.decide("s42")
    assert gate.fast
    assert first.optimized and first.payload == {"ttl_s": 100}
    assert gate.decide("s7").payload is first.payload  # one parsed payload per flag state


def test_integer_user_ids_are_bucketed_like_their_string_form(rollout_client, gates):
    for user in range(200):
        assert gates["flag-50"].decide(user).optimized is rollout_client.is_enabled(
            "flag-50", {"userId": str(user)}
        )


def test_a_killed_flag_sends_everyone_direct(gates):
    assert gates["killed"].decide("s1") == Decision(False)


def test_an_unknown_flag_sends_everyone_direct_as_unavailable(rollout_client):
    assert UnleashGate(rollout_client, "nope").decide("s1") == Decision(False, None, REASON_FLAG_UNAVAILABLE)


def test_other_shapes_fall_back_to_the_sdk(rollout_client):
    gate = UnleashGate(rollout_client, "constrained")
    assert [gate.decide(u).optimized for u in ("s1", "s2", "s3")] == [True, True, False]
    assert not gate.fast


def test_fast_path_answers_reach_the_sdk_metrics_at_its_next_refresh(tmp_path):
    client = bootstrapped_client(tmp_path, [rollguard_feature("opt", 50)])
    try:
        gate = UnleashGate(client, "opt")
        answers = [gate.decide(f"s{i}").optimized for i in range(40)]
        engine = client._engine
        engine.take_state(engine.get_state())  # what each SDK poll does
        counts = engine.get_metrics()["toggles"]["opt"]
        assert (counts["yes"], counts["no"]) == (sum(answers), 40 - sum(answers))
    finally:
        client.destroy()


def take_state(client: UnleashClient, features: list[dict[str, Any]]) -> None:
    """Hand the SDK's engine a new state, as its poll or stream does."""
    client._engine.take_state(json.dumps({"version": 2, "features": features}))


def test_a_changed_definition_is_reported_once_and_an_unchanged_state_never(tmp_path):
    client = bootstrapped_client(tmp_path, [rollguard_feature("opt", 50)])
    try:
        gate = UnleashGate(client, "opt")
        seen: list[int] = []
        gate.on_flag_change(lambda: seen.append(gate.refreshes))
        gate.decide("s1")
        take_state(client, [rollguard_feature("opt", 50)])  # a poll of the unchanged flag
        gate.decide("s1")
        assert seen == []

        for feature in (
            rollguard_feature("opt", 50, enabled=False),  # killed
            rollguard_feature("opt", 50),  # resumed
            rollguard_feature("opt", 100),  # promoted
            rollguard_feature("opt", 100, {"ttl_s": 9}),  # a new payload
        ):
            take_state(client, [feature])
            gate.decide("s1")
            gate.decide("s2")
        assert len(seen) == 4
    finally:
        client.destroy()


def test_a_flag_change_closes_an_open_breaker_and_a_lasting_fault_trips_it_again(tmp_path):
    from optimizer import Fault, FaultInjected

    client = bootstrapped_client(tmp_path, [rollguard_feature("opt", 100, {"breaker_min_calls": 3})])
    registry = CollectorRegistry()
    opt = Optimizer(CountingBackend(), name="fn", gate=UnleashGate(client, "opt"), registry=registry)

    def fails() -> bool:
        try:
            opt("k", user_id="s1")
        except FaultInjected:
            return True
        return False

    try:
        opt.fault = Fault(error_rate=1.0)
        wait_until(lambda: not fails() and opt.breaker_state == "open", what="the breaker tripped")
        take_state(client, [rollguard_feature("opt", 100, {"breaker_min_calls": 3}, enabled=False)])
        opt("k", user_id="s1")  # the kill reaches the gate at the next call
        assert opt.breaker_state == "closed"
        closed = {"fn": "fn", "state": "closed"}
        assert registry.get_sample_value("optimizer_breaker_transitions_total", closed) == 1

        take_state(client, [rollguard_feature("opt", 100, {"breaker_min_calls": 3})])  # resumed, fault on
        assert fails()  # the resumed flag's calls go optimized again
        wait_until(lambda: not fails() and opt.breaker_state == "open", what="the breaker tripped again")
    finally:
        opt.close()
        client.destroy()


def test_a_flag_never_loaded_sends_calls_direct_and_counts_why(tmp_path):
    client = UnleashClient(
        url=f"http://127.0.0.1:{free_port()}/api",
        app_name="never-loaded",
        disable_metrics=True,
        disable_registration=True,
        cache=FileCache("never-loaded", directory=str(tmp_path)),
        multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW,
    )
    registry = CollectorRegistry()
    backend = CountingBackend()
    opt = Optimizer(backend, name="fn", gate=UnleashGate(client, "opt"), registry=registry)
    try:
        opt("k", user_id="s1")
        opt("k", user_id="s1")
        assert backend.calls == ["k", "k"]
        assert (
            registry.get_sample_value(
                "optimizer_gate_bypass_total", {"fn": "fn", "reason": "flag_unavailable"}
            )
            == 2
        )
        assert registry.get_sample_value("optimizer_requests_total", {"fn": "fn", "path": "direct"}) == 2
    finally:
        opt.close()
        client.destroy()


def test_static_gate_answers_the_same_for_everyone():
    assert StaticGate(True, {"ttl_s": 3}).decide("a") == Decision(True, {"ttl_s": 3})
    assert StaticGate(False).decide(None) == Decision(False)


# Against the real flag service


@pytest.fixture
def live_sdk(flag_service: LiveFlagService, tmp_path: Path) -> Iterator[UnleashClient]:
    client = flag_service.sdk("optimizer-live", tmp_path / "sdk")
    yield client
    client.destroy()


def test_the_gate_follows_rollout_payload_and_kill_within_one_sdk_refresh(flag_service, live_sdk):
    users = [f"student-{i}" for i in range(200)]

    def sdk_cohort() -> list[bool]:
        return [live_sdk.is_enabled("exam-opt", {"userId": u}) for u in users]

    with flag_service.admin("test") as admin:
        flag = admin.create_flag("exam-opt", enabled=True, rollout=10, payload={"ttl_s": 5})
        gate = UnleashGate(live_sdk, "exam-opt")
        assert gate.decide("student-1").reason == REASON_FLAG_UNAVAILABLE  # not loaded yet: direct
        live_sdk.initialize_client()
        wait_until(lambda: "exam-opt" in live_sdk.feature_definitions(), what="flag loaded")
        assert [gate.decide(u).optimized for u in users] == sdk_cohort()
        assert gate.fast

        before = sdk_cohort()
        admin.set_rollout("exam-opt", 50, reason="promote")
        # As soon as the SDK itself answers with the new rollout, the gate must too: no extra refresh.
        wait_until(lambda: sdk_cohort() != before, what="the SDK saw rollout 50")
        assert [gate.decide(u).optimized for u in users] == sdk_cohort()
        assert 60 < sum(gate.decide(u).optimized for u in users) < 140

        flag = admin.get_flag("exam-opt")
        admin.update_flag("exam-opt", {"payload": {"ttl_s": 1, "max_batch": 8}}, version=flag.version)
        member = next(u for u in users if live_sdk.is_enabled("exam-opt", {"userId": u}))
        wait_until(
            lambda: (
                json.loads(live_sdk.get_variant("exam-opt", {"userId": member})["payload"]["value"])
                == {"ttl_s": 1, "max_batch": 8}
            ),
            what="the SDK saw the new payload",
        )
        assert gate.decide(member).payload == {"ttl_s": 1, "max_batch": 8}

        admin.kill("exam-opt", reason="guardrail breached")
        wait_until(lambda: not any(sdk_cohort()), what="the SDK saw the kill")
        assert not any(gate.decide(u).optimized for u in users)


def test_the_gate_keeps_the_last_known_flag_when_the_service_stops(flag_service, live_sdk):
    with flag_service.admin("test") as admin:
        admin.create_flag("exam-opt", enabled=True, rollout=100, payload={"ttl_s": 5})
    live_sdk.initialize_client()
    gate = UnleashGate(live_sdk, "exam-opt")
    wait_until(lambda: gate.decide("student-1").optimized, what="flag loaded")

    flag_service.process.stop()
    refreshes = gate.refreshes
    wait_until(lambda: gate.refreshes >= refreshes + 2, what="two SDK refreshes against the stopped service")

    decision = gate.decide("student-1")
    assert decision.optimized and decision.payload == {"ttl_s": 5}


def test_an_optimizer_follows_the_live_flag_and_its_payload_drives_the_breaker(flag_service, live_sdk):
    from optimizer import Fault, FaultInjected

    registry = CollectorRegistry()
    backend = CountingBackend()
    with flag_service.admin("test") as admin:
        admin.create_flag("exam-opt", enabled=True, rollout=0, payload={"ttl_s": 60})
        live_sdk.initialize_client()
        gate = UnleashGate(live_sdk, "exam-opt")
        opt = Optimizer(backend, name="fn", gate=gate, registry=registry)
        try:
            wait_until(lambda: "exam-opt" in live_sdk.feature_definitions(), what="flag loaded")
            opt("k", user_id="s1")
            opt("k", user_id="s1")
            assert opt.stats()["requests"] == {"optimized": 0, "direct": 2}

            flag = admin.get_flag("exam-opt")
            admin.update_flag(
                "exam-opt",
                {"rollout": 100, "payload": {"ttl_s": 60, "breaker_min_calls": 3}},
                version=flag.version,
            )
            wait_until(
                lambda: live_sdk.is_enabled("exam-opt", {"userId": "s1"}), what="the SDK saw rollout 100"
            )
            opt("k", user_id="s1")
            opt("k", user_id="s1")
            assert opt.stats()["requests"] == {"optimized": 2, "direct": 2}
            assert opt.effective_config.breaker.min_calls == 3

            opt.fault = Fault(error_rate=1.0)

            def served_direct() -> bool:
                try:
                    return bool(opt("k", user_id="s1") == {"key": "k", "version": 0})
                except FaultInjected:
                    return False

            # With the payload's 3 calls, the breaker's next tick (a tenth of its window) trips it.
            wait_until(served_direct, what="the breaker sent the call direct")
            assert opt.stats()["bypass"] == {"breaker_error_rate": 1}
        finally:
            opt.close()
