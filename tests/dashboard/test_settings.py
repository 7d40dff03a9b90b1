"""`DashboardSettings`: the variables it reads, the secrets that override them, and bad values."""

from __future__ import annotations

import getpass

import pydantic
import pytest
from click.testing import CliRunner
from streamlit.testing.v1 import AppTest

from dashboard.cli import command
from dashboard.settings import DashboardSettings
from flags.client import DEFAULT_FLAGS_URL
from tests.dashboard.conftest import APP

EVERY_VARIABLE = {
    "ROLLGUARD_FLAGS_URL": "http://flags:1/",
    "ROLLGUARD_ADMIN_TOKEN": "admin-secret",
    "ROLLGUARD_DASHBOARD_OPERATOR": "ann",
    "ROLLGUARD_DASHBOARD_PASSWORD": "door",
    "ROLLGUARD_DASHBOARD_REFRESH_S": "2.5",
    "ROLLGUARD_DASHBOARD_READ_ONLY": "true",
}


def test_every_variable_is_read():
    settings = DashboardSettings.from_env(EVERY_VARIABLE)
    assert settings.flags_url == "http://flags:1"
    assert (settings.admin_token, settings.password) == ("admin-secret", "door")
    assert settings.actor == "dashboard:ann"
    assert settings.refresh_s == 2.5
    assert settings.read_only is True and not settings.can_write
    assert "admin-secret" not in repr(settings) and "door" not in repr(settings)


def test_defaults_when_unset_or_empty():
    unset = DashboardSettings.from_env({})
    empty = DashboardSettings.from_env(dict.fromkeys(EVERY_VARIABLE, ""))
    assert unset.model_dump(exclude={"control_env"}) == empty.model_dump(exclude={"control_env"})
    assert unset.flags_url == DEFAULT_FLAGS_URL
    assert unset.admin_token is None and unset.password is None
    assert unset.operator == getpass.getuser()
    assert unset.refresh_s == 10.0
    assert unset.read_only is False and not unset.can_write


def test_lower_case_secrets_override_single_variables():
    settings = DashboardSettings.from_env(
        EVERY_VARIABLE,
        {
            "flags_url": "http://other:2",
            "operator": "bob",
            "refresh_s": 60,
            "read_only": False,
            "password": "",
        },
    )
    assert settings.flags_url == "http://other:2"
    assert settings.actor == "dashboard:bob"
    assert settings.refresh_s == 60.0
    assert settings.can_write
    # An empty secret counts as unset: the default, not the environment's value.
    assert settings.password is None
    assert settings.admin_token == "admin-secret"


def test_the_metric_source_gets_the_environment_the_secrets_and_the_dashboards_flag_service():
    settings = DashboardSettings.from_env(
        {"ROLLGUARD_METRICS": "prometheus", "ROLLGUARD_PROMETHEUS_URL": "http://p:1", "HOME": "/root"},
        {"metrics": "impact", "control_database_url": "sqlite:///x.db", "flags_url": "http://f:1"},
    )
    assert dict(settings.control_env) == {
        "ROLLGUARD_METRICS": "impact",
        "ROLLGUARD_PROMETHEUS_URL": "http://p:1",
        "ROLLGUARD_CONTROL_DATABASE_URL": "sqlite:///x.db",
        "ROLLGUARD_FLAGS_URL": "http://f:1",
    }


def test_from_env_reads_only_the_mapping_it_is_given(monkeypatch):
    monkeypatch.setenv("ROLLGUARD_DASHBOARD_REFRESH_S", "99")
    monkeypatch.setenv("ROLLGUARD_METRICS", "prometheus")
    settings = DashboardSettings.from_env({})
    assert settings.refresh_s == 10.0 and settings.control_env == ()


@pytest.mark.parametrize(
    ("variable", "secret", "value", "problem"),
    [
        pytest.param("ROLLGUARD_DASHBOARD_REFRESH_S", "refresh_s", "0", "greater than 0", id="refresh-zero"),
        pytest.param("ROLLGUARD_DASHBOARD_REFRESH_S", "refresh_s", "soon", "valid number", id="refresh-text"),
        pytest.param("ROLLGUARD_DASHBOARD_READ_ONLY", "read_only", "maybe", "valid boolean", id="read-only"),
    ],
)
def test_a_bad_value_names_the_variable_and_the_value(variable, secret, value, problem):
    for environ, secrets in (({variable: value}, {}), ({}, {secret: value})):
        with pytest.raises(ValueError) as raised:
            DashboardSettings.from_env(environ, secrets)
        message = str(raised.value)
        assert f"{variable}={value!r}" in message and problem in message and "\n" not in message


def test_settings_are_immutable():
    settings = DashboardSettings.from_env({})
    with pytest.raises(pydantic.ValidationError):
        settings.operator = "mallory"  # type: ignore[misc]
    assert settings.model_copy(update={"operator": "sso-user"}).actor == "dashboard:sso-user"


def test_the_command_refuses_a_bad_value_before_starting_streamlit():
    result = CliRunner().invoke(command, [], env={"ROLLGUARD_DASHBOARD_READ_ONLY": "maybe"})
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: ROLLGUARD_DASHBOARD_READ_ONLY='maybe': Input should be a valid boolean, unable to interpret input"
    ]


def test_the_app_shows_a_bad_secret_instead_of_a_traceback():
    at = AppTest.from_file(APP, default_timeout=30)
    at.secrets["refresh_s"] = 0
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "Configuration: ROLLGUARD_DASHBOARD_REFRESH_S='0': Input should be greater than 0"
    ]
