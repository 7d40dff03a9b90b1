"""`rollguard traffic run` leaves the start and end of its scenario on the flag service's timeline."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from rollguard import ROLLGUARD
from tests.conftest import start_flag_service
from tests.portal.conftest import seed_database, start_portal
from tests.support import REPO

pytestmark = pytest.mark.slow


def test_a_mass_submission_is_annotated_at_its_start_and_end(tmp_path: Path) -> None:
    flags = start_flag_service(tmp_path)
    portal = start_portal(
        tmp_path, database_url=seed_database(f"sqlite:///{tmp_path / 'portal.db'}"), optimize=True
    )
    try:
        result = subprocess.run(
            [
                *ROLLGUARD,
                "traffic",
                "run",
                "--scenario",
                "mass-submission",
                "--users",
                "10",
                "--duration",
                "2",
            ]
            + ["--target", portal.url, "--settle", "5"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
            check=False,
            env={**os.environ, "ROLLGUARD_FLAGS_URL": flags.url, "ROLLGUARD_ADMIN_TOKEN": flags.admin_token},
        )
        assert result.returncode == 0, result.stderr[-3000:]
        with flags.admin() as admin:
            notes = sorted(admin.annotations(), key=lambda a: a.id)
    finally:
        portal.process.terminate()
        flags.process.terminate()

    assert [(n.kind, n.actor, n.flag) for n in notes] == [
        ("mass-submission-start", "traffic", None),
        ("mass-submission-end", "traffic", None),
    ]
    assert notes[0].text == "mass-submission starts: 10 users for 2s"
    assert notes[0].time <= notes[1].time
