"""`rollguard alerts ...` as an operator runs it: exit codes, output, refusals."""

from __future__ import annotations

import os
import subprocess

import yaml

from rollguard import ROLLGUARD, free_port
from tests.alerts.conftest import new_flag
from tests.alerts.test_rules import ERROR_SLO
from tests.conftest import LiveFlagService


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLGUARD_")}
    return {**env, **values}


def test_rules_go_to_stdout_by_default(flags_live: LiveFlagService) -> None:
    flag = new_flag(flags_live, guardrails=(ERROR_SLO,))

    result = subprocess.run(
        [*ROLLGUARD, "alerts", "rules", "--windows", "workbook"],
        env=_env(ROLLGUARD_FLAGS_URL=flags_live.url, ROLLGUARD_ADMIN_TOKEN=flags_live.admin_token),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    document = yaml.safe_load(result.stdout)
    (group,) = [g for g in document["groups"] if g["name"] == f"rollguard-flag-{flag.key}"]
    assert {r["labels"]["long_window"] for r in group["rules"]} == {"1h", "6h", "1d", "3d"}


def test_rules_fail_when_flag_service_is_down() -> None:
    result = subprocess.run(
        [*ROLLGUARD, "alerts", "rules", "--flags-url", f"http://127.0.0.1:{free_port()}"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert result.stdout == ""
    assert "cannot read flags" in result.stderr


def test_serve_refuses_to_start_without_token() -> None:
    result = subprocess.run(
        [*ROLLGUARD, "alerts", "serve", "--port", str(free_port())],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "ROLLGUARD_ALERTS_TOKEN" in result.stderr
