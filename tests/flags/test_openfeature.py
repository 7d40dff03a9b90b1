"""An OpenFeature client with the official OFREP provider reads flags from the served OFREP API."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from tests.conftest import LiveFlagService
from tests.support import wait_until

DOMAIN = "rollguard-ofrep-test"
PAYLOADS = "rollguard-ofrep-payloads-test"


@pytest.fixture
def openfeature_client(flag_service: LiveFlagService) -> Iterator[OpenFeatureClient]:
    provider = OFREPProvider(
        flag_service.url, headers_factory=lambda: {"Authorization": flag_service.client_token}
    )
    api.set_provider(provider, domain=DOMAIN)
    yield api.get_client(domain=DOMAIN)
    api.clear_providers()


@pytest.fixture
def payload_client(flag_service: LiveFlagService) -> Iterator[OpenFeatureClient]:
    # The same provider, pointed at the mount that answers payloads as values.
    provider = OFREPProvider(
        f"{flag_service.url}/payloads", headers_factory=lambda: {"Authorization": flag_service.client_token}
    )
    api.set_provider(provider, domain=PAYLOADS)
    yield api.get_client(domain=PAYLOADS)
    api.clear_providers()


def test_provider_reads_on_off_payload_and_kill(
    flag_service: LiveFlagService, openfeature_client: OpenFeatureClient
) -> None:
    context = EvaluationContext(targeting_key="student-1")
    with flag_service.admin("test") as admin:
        admin.create_flag("opt", enabled=True, rollout=100, payload={"ttl_s": 30})
        details = openfeature_client.get_boolean_details("opt", False, context)
        assert (details.value, details.variant, details.reason) == (True, "config", Reason.TARGETING_MATCH)
        assert json.loads(str(details.flag_metadata["payload"])) == {"ttl_s": 30}

        admin.kill("opt", reason="breach")
        # Another worker process may answer; each notices the change within its revision check.
        wait_until(
            lambda: openfeature_client.get_boolean_value("opt", True, context) is False, what="kill served"
        )
        killed = openfeature_client.get_boolean_details("opt", True, context)
        assert (killed.value, killed.reason) == (False, Reason.DISABLED)


def test_unknown_flag_gives_the_default_with_flag_not_found(openfeature_client: OpenFeatureClient) -> None:
    details = openfeature_client.get_boolean_details("nope", True, EvaluationContext(targeting_key="u"))
    assert details.value is True
    assert details.error_code == ErrorCode.FLAG_NOT_FOUND


def test_payloads_are_object_and_string_values_and_a_key_is_required(
    flag_service: LiveFlagService, openfeature_client: OpenFeatureClient, payload_client: OpenFeatureClient
) -> None:
    context = EvaluationContext(targeting_key="student-1")
    colour = {"name": "blue", "weight": 1000, "payload": {"type": "string", "value": "#00f"}}
    feature = {
        "name": "colour",
        "enabled": True,
        "strategies": [{"name": "default", "parameters": {}, "variants": [colour]}],
    }
    with flag_service.admin("test") as admin:
        admin.create_flag("opt", enabled=True, rollout=100, payload={"ttl_s": 30})
        admin.create_flag("dark", enabled=True, rollout=0, payload={"ttl_s": 5})
        admin.import_unleash({"features": [feature]})

    config = payload_client.get_object_details("opt", {}, context)
    assert (config.value, config.variant, config.error_code) == ({"ttl_s": 30}, "config", None)
    text = payload_client.get_string_details("colour", "grey", context)
    assert (text.value, text.variant, text.error_code) == ("#00f", "blue", None)
    outside = payload_client.get_object_details("dark", {"ttl_s": 1}, context)
    assert (outside.value, outside.reason, outside.error_code) == ({"ttl_s": 1}, Reason.DEFAULT, None)
    # Only where the types differ: the payload is an object, not a string.
    mismatch = payload_client.get_string_details("opt", "fallback", context)
    assert (mismatch.value, mismatch.error_code) == ("fallback", ErrorCode.TYPE_MISMATCH)
    # Boolean clients on the default mount are unchanged.
    assert openfeature_client.get_boolean_value("opt", False, context) is True
    assert openfeature_client.get_boolean_value("colour", False, context) is True
    anonymous = openfeature_client.get_boolean_details(
        "opt", False, EvaluationContext(attributes={"plan": "pro"})
    )
    assert (anonymous.value, anonymous.error_code) == (False, ErrorCode.TARGETING_KEY_MISSING)
