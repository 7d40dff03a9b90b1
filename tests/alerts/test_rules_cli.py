"""`rollguard alerts rules` against a real flag service: a guardrail it cannot turn into a rule is reported once."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from flags.client import Guardrail
from rollguard import ROLLGUARD
from tests.conftest import start_flag_service
from tests.support import REPO


def test_a_guardrail_without_a_rule_is_reported_once(tmp_path: Path) -> None:
    service = start_flag_service(tmp_path)
    try:
        with service.admin("setup") as admin:
            admin.create_flag(
                "nofn",
                enabled=True,
                rollout=10,
                guardrails=[Guardrail("error_rate", "<=", 0.01, path="optimized")],
            )
        result = subprocess.run(
            [*ROLLGUARD, "alerts", "rules", "--out", str(tmp_path / "rules.yml")],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            check=False,
            env={
                **os.environ,
                "ROLLGUARD_FLAGS_URL": service.url,
                "ROLLGUARD_ADMIN_TOKEN": service.admin_token,
            },
        )
    finally:
        service.process.terminate()

    assert result.returncode == 0, result.stderr
    assert result.stderr.count("payload has no 'fn'") == 1, result.stderr
    assert "warning: no rule for nofn" in result.stderr
