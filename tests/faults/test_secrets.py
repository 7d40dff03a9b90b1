"""Secrets on disk are private, and the dashboard is not served off loopback without authentication."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from dashboard.cli import command as dashboard_command
from dashboard.cli import has_authentication, is_loopback
from rollguard.secretfile import write_private
from rollguard.up import DEFAULT_PORTS, environment, new_secrets


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_secrets_are_written_0600_in_a_0700_folder(tmp_path: Path) -> None:
    folder = tmp_path / "var"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    target = folder / "demo.env"
    target.write_text("old")
    target.chmod(0o644)
    previous = os.umask(0)
    try:
        write_private(target, "export ROLLGUARD_ADMIN_TOKEN=secret\n")
    finally:
        os.umask(previous)
    assert target.read_text() == "export ROLLGUARD_ADMIN_TOKEN=secret\n"
    assert _mode(target) == 0o600
    assert _mode(folder) == 0o700
    assert sorted(p.name for p in folder.iterdir()) == ["demo.env"]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False), ("10.1.2.3", False)],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_authentication_is_a_password_or_single_sign_on(tmp_path: Path) -> None:
    assert has_authentication({"ROLLGUARD_DASHBOARD_PASSWORD": "pw"}, tmp_path)
    home_has_auth = has_authentication({}, Path("/nonexistent"))
    assert has_authentication({}, tmp_path) is home_has_auth
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text(
        '[auth]\nredirect_uri = "http://x/oauth2callback"\n'
    )
    assert has_authentication({}, tmp_path)


def test_dashboard_refuses_a_public_bind_without_authentication(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"ROLLGUARD_DASHBOARD_PASSWORD": "", "HOME": str(tmp_path)}
    with runner.isolated_filesystem(temp_dir=tmp_path):
        result = runner.invoke(dashboard_command, ["--host", "0.0.0.0", "--port", "1"], env=env)
    assert result.exit_code == 2
    assert "no authentication" in result.output
    assert "--insecure-no-auth" in result.output


def test_the_demo_dashboard_gets_a_new_password_that_its_own_check_accepts(tmp_path: Path) -> None:
    first, second = new_secrets(), new_secrets()
    password = first["ROLLGUARD_DASHBOARD_PASSWORD"]
    assert len(password) >= 16 and password != second["ROLLGUARD_DASHBOARD_PASSWORD"]
    urls = {name: f"http://127.0.0.1:{port}" for name, port in DEFAULT_PORTS.items()}
    # Every child of `rollguard up`, the dashboard included, starts with it (and demo.env stores it:
    # tests/e2e/test_demo_live.py reads it back there and logs in with it).
    children = environment(tmp_path, urls, first)
    assert children["ROLLGUARD_DASHBOARD_PASSWORD"] == password
    assert has_authentication(children, tmp_path)
