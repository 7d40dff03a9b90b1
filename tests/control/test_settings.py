"""`ControlSettings`: every variable it reads, its defaults, and what a bad value says."""

from __future__ import annotations

import pydantic
import pytest
from click.testing import CliRunner

from control.control_cli import command
from control.errors import PermanentError
from control.impact_names import ImpactNames
from control.settings import ControlSettings
from flags.client import DEFAULT_FLAGS_URL

EVERY_VARIABLE = {
    "ROLLGUARD_FLAGS_URL": "http://flags:1",
    "ROLLGUARD_ADMIN_TOKEN": "admin-secret",
    "ROLLGUARD_CONTROL_DATABASE_URL": "sqlite:///c.db",
    "ROLLGUARD_METRICS": "Impact",
    "ROLLGUARD_PROMETHEUS_URL": "http://prom:9090",
    "ROLLGUARD_IMPACT_METRIC_NAMES": "requests=app_calls, errors=app_failures",
    "ROLLGUARD_SCRAPE_TARGETS": "http://a:1, http://b:2/metrics/,",
    "ROLLGUARD_SCRAPE_INTERVAL_S": "0.5",
    "ROLLGUARD_CONTROL_INTERVAL_S": "2.5",
    "ROLLGUARD_CONTROL_RETENTION_S": "3600",
    "ROLLGUARD_CONTROL_LEASE_S": "7",
    "ROLLGUARD_NOTIFY_WEBHOOK_URL": "http://hook",
    "ROLLGUARD_NOTIFY_SLACK_URL": "http://slack",
    "ROLLGUARD_CONTROL_DRY_RUN": "yes",
}


def test_every_variable_is_read():
    settings = ControlSettings.from_env(EVERY_VARIABLE)
    assert settings.flags_url == "http://flags:1"
    assert settings.admin_token == "admin-secret"
    assert settings.database_url == "sqlite:///c.db"
    assert settings.metrics == "impact"
    assert settings.prometheus_url == "http://prom:9090"
    assert (settings.impact_names.requests, settings.impact_names.errors) == ("app_calls", "app_failures")
    assert settings.impact_names.latency == ImpactNames().latency
    assert settings.scrape_targets == ("http://a:1/metrics", "http://b:2/metrics")
    assert (settings.scrape_interval_s, settings.interval_s, settings.lease_s) == (0.5, 2.5, 7.0)
    assert settings.retention_s == 3600
    assert (settings.notify_webhook_url, settings.notify_slack_url) == ("http://hook", "http://slack")
    assert settings.dry_run is True
    assert "admin-secret" not in repr(settings)


def test_defaults_when_unset_or_empty():
    unset = ControlSettings.from_env({})
    assert unset == ControlSettings.from_env(dict.fromkeys(EVERY_VARIABLE, ""))
    assert unset.flags_url == DEFAULT_FLAGS_URL == "http://127.0.0.1:4242"
    assert unset.admin_token is None and unset.prometheus_url is None
    assert unset.database_url == "sqlite:///./var/control.db"
    assert unset.metrics == "embedded"
    assert unset.impact_names == ImpactNames()
    assert unset.scrape_targets == ()
    assert (unset.scrape_interval_s, unset.interval_s, unset.lease_s) == (1.0, 1.0, 15.0)
    assert unset.retention_s == 2 * 24 * 3600
    assert unset.notify_webhook_url is None and unset.notify_slack_url is None
    assert unset.dry_run is False


def test_from_env_reads_only_the_mapping_it_is_given(monkeypatch):
    monkeypatch.setenv("ROLLGUARD_CONTROL_INTERVAL_S", "9")
    monkeypatch.setenv("ROLLGUARD_SCRAPE_TARGETS", "http://elsewhere:1")
    assert ControlSettings.from_env({}).interval_s == 1.0
    assert ControlSettings.from_env({}).scrape_targets == ()


def test_the_class_reads_the_process_environment_like_from_env(monkeypatch):
    for name, value in EVERY_VARIABLE.items():
        monkeypatch.setenv(name, value)
    assert ControlSettings() == ControlSettings.from_env(EVERY_VARIABLE)


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        pytest.param("ROLLGUARD_METRICS", "graphite", "'embedded', 'prometheus' or 'impact'", id="metrics"),
        pytest.param("ROLLGUARD_CONTROL_INTERVAL_S", "abc", "valid number", id="interval-text"),
        pytest.param("ROLLGUARD_CONTROL_INTERVAL_S", "-1", "greater than 0", id="interval-negative"),
        pytest.param("ROLLGUARD_SCRAPE_INTERVAL_S", "0", "greater than 0", id="scrape-interval-zero"),
        pytest.param("ROLLGUARD_CONTROL_LEASE_S", "soon", "valid number", id="lease"),
        pytest.param("ROLLGUARD_CONTROL_RETENTION_S", "1.5", "valid integer", id="retention-fraction"),
        pytest.param("ROLLGUARD_CONTROL_DRY_RUN", "maybe", "valid boolean", id="dry-run"),
        pytest.param("ROLLGUARD_IMPACT_METRIC_NAMES", "requests", "role=name", id="impact-names"),
    ],
)
def test_a_bad_value_names_the_variable_and_the_value(variable, value, problem):
    with pytest.raises(PermanentError) as raised:
        ControlSettings.from_env({variable: value})
    message = str(raised.value)
    assert variable in message and repr(value) in message and problem in message
    assert "\n" not in message


def test_every_bad_value_is_reported_at_once():
    with pytest.raises(PermanentError) as raised:
        ControlSettings.from_env({"ROLLGUARD_CONTROL_INTERVAL_S": "abc", "ROLLGUARD_CONTROL_LEASE_S": "-1"})
    assert "ROLLGUARD_CONTROL_INTERVAL_S='abc'" in str(raised.value)
    assert "ROLLGUARD_CONTROL_LEASE_S='-1'" in str(raised.value)


def test_settings_are_immutable_and_copied_with_changes():
    settings = ControlSettings.from_env({})
    with pytest.raises(pydantic.ValidationError):
        settings.interval_s = 5.0  # type: ignore[misc]
    changed = settings.model_copy(update={"interval_s": 5.0})
    assert (settings.interval_s, changed.interval_s) == (1.0, 5.0)
    assert hash(settings) == hash(ControlSettings.from_env({}))


@pytest.mark.parametrize("subcommand", ["run", "status"])
def test_the_command_says_what_is_wrong_in_one_line(subcommand, tmp_path):
    env = {
        "ROLLGUARD_CONTROL_DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}",
        "ROLLGUARD_CONTROL_INTERVAL_S": "abc",
    }
    result = CliRunner().invoke(command, [subcommand], env=env)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: ROLLGUARD_CONTROL_INTERVAL_S='abc': Input should be a valid number, unable to parse string as a number"
    ]
