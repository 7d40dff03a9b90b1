"""While the flag service is down, the portal's SDK logs one line per failure, not a traceback."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import pytest

from portal.gate import build_gate
from portal.settings import PortalSettings
from rollguard import free_port
from tests.support import wait_until


def _unreachable_flags(tmp_path: Path, mode: Literal["streaming", "polling"]) -> PortalSettings:
    """Portal settings whose flag service is a free port nobody listens on."""
    return PortalSettings(
        flags_mode=mode,
        database_url=f"sqlite:///{tmp_path / 'p.db'}",
        var_dir=tmp_path / "var",
        flags_url=f"http://127.0.0.1:{free_port()}",
        flags_refresh_s=1,
        flags_metrics_s=1,
    )


def test_sdk_failures_are_logged_as_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="UnleashClient")
    built = build_gate(_unreachable_flags(tmp_path, "polling"))
    try:

        def failures() -> list[logging.LogRecord]:
            return [r for r in caplog.records if r.name == "UnleashClient" and r.levelno >= logging.ERROR]

        wait_until(lambda: len(failures()) >= 3, timeout=30, what="three failed SDK requests logged")
        assert all(record.exc_info is None for record in failures())
        assert any("ConnectionError" in record.getMessage() for record in failures())
        assert "Traceback" not in caplog.text
    finally:
        built.close()


def test_a_streaming_sdk_logs_its_reconnects_without_tracebacks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="UnleashClient")
    built = build_gate(_unreachable_flags(tmp_path, "streaming"))
    try:

        def attempts() -> list[logging.LogRecord]:
            return [r for r in caplog.records if r.getMessage().startswith("Connecting to stream")]

        wait_until(lambda: len(attempts()) >= 2, timeout=30, what="the stream tried twice")
        assert all(record.exc_info is None for record in caplog.records if record.name == "UnleashClient")
        assert "Traceback" not in caplog.text
    finally:
        built.close()
