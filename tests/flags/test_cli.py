"""`rollguard flags` admin commands against a running service, and their errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from rollguard import ROLLGUARD, free_port
from tests.conftest import LiveFlagService
from tests.support import start_process

UNLEASH8 = Path(__file__).parent / "unleash8"


def _run(*args: str, url: str, token: str | None) -> subprocess.CompletedProcess[str]:
    env = {"ROLLGUARD_FLAGS_URL": url, "PATH": "/usr/bin:/bin"}
    if token:
        env["ROLLGUARD_ADMIN_TOKEN"] = token
    return subprocess.run(
        [*ROLLGUARD, "flags", *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_admin_commands_change_flags_and_audit_them(flag_service: LiveFlagService) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return _run(*args, url=flag_service.url, token=flag_service.admin_token)

    created = cli(
        "--actor",
        "dashboard:alice",
        "create",
        "opt",
        "--enabled",
        "--rollout",
        "10",
        "--payload",
        '{"ttl_s": 30}',
        "--json",
    )
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["state"] == "rolling_out"
    assert cli("set-rollout", "opt", "50", "--reason", "healthy").returncode == 0
    killed = cli("kill", "opt", "--reason", "p95 breach")
    assert killed.returncode == 0
    assert "rolled_back" in killed.stdout
    listed = cli("list")
    assert listed.stdout.splitlines()[0].split() == [
        "KEY",
        "ENABLED",
        "ROLLOUT",
        "STATE",
        "VERSION",
        "UPDATED_AT",
    ]
    assert listed.stdout.splitlines()[1].split()[:4] == ["opt", "False", "50%", "rolled_back"]
    events = json.loads(cli("events", "--flag", "opt", "--json").stdout)
    assert [e["action"] for e in events] == ["kill", "set_rollout", "create"]
    assert events[2]["actor"] == "dashboard:alice"
    assert events[0]["reason"] == "p95 breach"
    assert json.loads(cli("get", "opt", "--json").stdout)["rollout"] == 50


def test_tokens_and_export_import_round_trip(flag_service: LiveFlagService, tmp_path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return _run(*args, url=flag_service.url, token=flag_service.admin_token)

    secret = cli("token-create", "portal", "--scope", "client").stdout.strip()
    assert secret.startswith("rg-client-")
    listed = json.loads(cli("tokens", "--json").stdout)
    portal = next(t for t in listed if t["name"] == "portal")
    assert "secret" not in portal or portal["secret"] is None
    assert cli("token-revoke", str(portal["id"])).returncode == 0
    assert "True" in next(line for line in cli("tokens").stdout.splitlines() if "portal" in line)

    assert cli("create", "opt", "--enabled", "--rollout", "20").returncode == 0
    exported = cli("export")
    assert exported.returncode == 0
    document = tmp_path / "export.json"
    document.write_text(exported.stdout)
    imported = cli("import", str(document), "--replace")
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["flags"] == 1
    (tmp_path / "bad.json").write_text("{nope")
    bad = cli("import", str(tmp_path / "bad.json"))
    assert bad.returncode == 2
    assert "not valid JSON" in bad.stderr


def test_migration_to_and_from_unleash_8_reports_what_stays_behind(flag_service: LiveFlagService) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return _run(*args, url=flag_service.url, token=flag_service.admin_token)

    state = cli("import", str(UNLEASH8 / "rollguard-state.json"))
    assert state.returncode == 0, state.stderr
    exported = cli("export", "--format", "unleash-import")
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout) == json.loads((UNLEASH8 / "rollguard-unleash-import.json").read_text())
    assert "rg-office-cidr: left out: constraint on remoteAddress uses IN_CIDR" in exported.stderr
    assert "rg-userlist: carried, but: strategy userWithId written as default" in exported.stderr

    imported = cli("import", str(UNLEASH8 / "unleash-export.json"))
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["format"] == "unleash-export"
    assert "segment-pilot: left out: its strategies use segments (pilot-schools)" in imported.stderr
    assert json.loads(cli("get", "exam-attempts-optimization", "--json").stdout)["rollout"] == 50


def test_refusal_exits_1_with_the_servers_message(flag_service: LiveFlagService) -> None:
    missing = _run("get", "nope", url=flag_service.url, token=flag_service.admin_token)
    assert missing.returncode == 1
    assert "404 flag_not_found: no flag 'nope'" in missing.stderr
    bad_token = _run("list", url=flag_service.url, token="wrong")
    assert bad_token.returncode == 1
    assert "401 unauthenticated" in bad_token.stderr
    invalid = _run("create", "Bad Key", url=flag_service.url, token=flag_service.admin_token)
    assert invalid.returncode == 1
    assert "422 validation_failed" in invalid.stderr
    assert "Traceback" not in invalid.stderr


def test_service_down_exits_1() -> None:
    result = _run("list", url=f"http://127.0.0.1:{free_port()}", token="x")
    assert result.returncode == 1
    assert "flag service unavailable" in result.stderr
    assert "Traceback" not in result.stderr


def test_dev_server_serves_the_same_api(tmp_path) -> None:
    port = free_port()
    env = {
        "ROLLGUARD_DATABASE_URL": f"sqlite:///{tmp_path / 'dev' / 'flags.db'}",
        "ROLLGUARD_ADMIN_TOKEN": "dev-admin",
    }
    server = start_process(
        [*ROLLGUARD, "flags", "serve", "--dev", "--port", str(port)],
        ready_url=f"http://127.0.0.1:{port}/readyz",
        log_path=tmp_path / "dev.log",
        env=env,
    )
    try:
        created = _run("create", "opt", "--json", url=f"http://127.0.0.1:{port}", token="dev-admin")
        assert created.returncode == 0, created.stderr
        assert json.loads(created.stdout)["key"] == "opt"
    finally:
        server.stop()


def test_bad_url_and_busy_port_are_reported_without_traceback(flag_service: LiveFlagService) -> None:
    bad_url = _run("list", url="notaurl", token="x")
    assert bad_url.returncode == 1
    assert "error: flag service unavailable" in bad_url.stderr
    port = flag_service.url.rsplit(":", 1)[1]
    busy = subprocess.run(
        [*ROLLGUARD, "flags", "serve", "--port", port],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "ROLLGUARD_DATABASE_URL": flag_service.database_url},
    )
    assert busy.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in busy.stderr
    assert "Traceback" not in bad_url.stderr + busy.stderr
