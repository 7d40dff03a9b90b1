"""`rollguard control status` and the settings the commands read from the environment."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from control.control_cli import command
from control.errors import PermanentError
from control.settings import ControlSettings
from control.store import DecisionRecord


def test_status_shows_the_leader_and_recent_actions(store, clock):
    env = {"ROLLGUARD_CONTROL_DATABASE_URL": str(store.url)}
    empty = CliRunner().invoke(command, ["status"], env=env)
    assert empty.exit_code == 0 and "no controller" in empty.output

    assert store.acquire_lease("host:1:abc", lease_s=3600)
    store.mark_evaluation("host:1:abc")
    store.record_decision(DecisionRecord(clock.now, "f", "hold", "waiting", False, 10, "host:1:abc"))
    store.record_decision(
        DecisionRecord(clock.now, "f", "rollback", "error_rate too high", False, 10, "host:1:abc")
    )
    out = CliRunner().invoke(command, ["status", "--json"], env=env)
    assert out.exit_code == 0, out.output
    status = json.loads(out.output)
    assert status["leader"]["holder"] == "host:1:abc"
    assert [d["action"] for d in status["decisions"]] == ["rollback"]
    text = CliRunner().invoke(command, ["status"], env=env)
    assert "leader host:1:abc" in text.output and "error_rate too high" in text.output


def test_settings_from_environment():
    settings = ControlSettings.from_env(
        {
            "ROLLGUARD_METRICS": "prometheus",
            "ROLLGUARD_PROMETHEUS_URL": "http://127.0.0.1:9090",
            "ROLLGUARD_SCRAPE_TARGETS": "http://a:1, http://b:2/metrics,",
            "ROLLGUARD_CONTROL_INTERVAL_S": "2.5",
        }
    )
    assert settings.metrics == "prometheus"
    assert settings.scrape_targets == ("http://a:1/metrics", "http://b:2/metrics")
    assert settings.interval_s == 2.5 and settings.lease_s == 15.0
    assert ControlSettings.from_env({}).database_url == "sqlite:///./var/control.db"
    with pytest.raises(PermanentError):
        ControlSettings.from_env({"ROLLGUARD_METRICS": "graphite"})
    with pytest.raises(PermanentError):
        ControlSettings.from_env({"ROLLGUARD_CONTROL_INTERVAL_S": "-1"})


def test_run_refuses_prometheus_without_its_url(tmp_path):
    env = {"ROLLGUARD_CONTROL_DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}", "ROLLGUARD_PROMETHEUS_URL": ""}
    out = CliRunner().invoke(command, ["run", "--metrics", "prometheus"], env=env)
    assert out.exit_code != 0 and "ROLLGUARD_PROMETHEUS_URL" in out.output
