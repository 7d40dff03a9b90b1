"""The portal's gate follows its flag through the official SDK, streaming by default, and says so."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from portal.gate import build_gate
from portal.settings import FLAG_KEY, PortalSettings
from tests.conftest import LiveFlagService
from tests.support import wait_until


@pytest.mark.parametrize("mode", ["streaming", "polling"])
def test_gate_logs_its_mode_and_follows_a_kill(
    flag_service: LiveFlagService, tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    settings = PortalSettings(
        flags_url=flag_service.url,
        client_token=flag_service.client_token,
        var_dir=tmp_path,
        flags_refresh_s=1,
    )
    assert settings.flags_mode == "streaming", "streaming is the default"
    settings.flags_mode = "streaming" if mode == "streaming" else "polling"
    with flag_service.admin("test") as admin:
        admin.create_flag(FLAG_KEY, enabled=True, rollout=100)
        with caplog.at_level(logging.INFO, logger="portal.gate"):
            built = build_gate(settings)
        try:
            assert f"in {mode} mode" in caplog.text
            wait_until(lambda: built.gate.decide("student-1").optimized, what="flag on at the gate")
            admin.kill(FLAG_KEY, reason="guardrail breached")
            wait_until(lambda: not built.gate.decide("student-1").optimized, what="kill seen at the gate")
        finally:
            built.close()
